"""The two towers: token bags (and the user's history) -> vectors."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from rankers.model.layers import MLP, BagEncoder


class UserTower(nn.Module):
    """tokens, weights [B, Tu]; history [B, H] (item index + 1, 0 = pad); history_weights [B, H]
    (1 = use the item, 0 = leave it out) -> [B, D]. The history bag is Σ w_j y_j / (Σ w_j)^alpha:
    alpha = 1 is the mean, alpha = 0.5 the FISM normalisation that lets longer histories speak louder."""

    def __init__(self, n_tokens: int, n_items: int, dim: int, use_history: bool, mlp: List[int],
                 dropout: float, history_alpha: float, sparse: bool = False):
        super().__init__()
        self.features = BagEncoder(n_tokens, dim, sparse=sparse)
        self.use_history = use_history
        self.history_alpha = history_alpha
        self.history = BagEncoder(n_items + 1, dim, sparse=sparse)
        self.mlp = MLP(dim, mlp, dropout) if mlp else nn.Identity()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor, history: torch.Tensor,
                history_weights: torch.Tensor) -> torch.Tensor:
        x = self.features(tokens, weights)
        if self.use_history:
            n = history_weights.sum(1, keepdim=True).clamp_min(1.0)
            x = x + self.history(history, history_weights / n.pow(self.history_alpha))
        return self.mlp(x)


class ItemTower(nn.Module):
    """tokens, weights [B, Ti] -> (vectors [B, D], bias [B]). The bias is a bag over the same
    tokens, so a new item gets a bias from its features."""

    def __init__(self, n_tokens: int, dim: int, mlp: List[int], use_bias: bool, dropout: float,
                 sparse: bool = False):
        super().__init__()
        self.features = BagEncoder(n_tokens, dim, sparse=sparse)
        self.bias = BagEncoder(n_tokens, 1, init_std=0.0, sparse=sparse)
        self.use_bias = use_bias
        self.mlp = MLP(dim, mlp, dropout) if mlp else nn.Identity()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.mlp(self.features(tokens, weights))
        b = self.bias(tokens, weights).squeeze(-1)
        if not self.use_bias:
            b = torch.zeros_like(b)
        return x, b
