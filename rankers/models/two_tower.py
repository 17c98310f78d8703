"""The two-tower scorer: score(u, i) = <user_tower(u), item_tower(i)> + bias(i).

User tower: the bag of the user's id and feature tokens plus the mean of the items in the
user's training history (its own item table, as in SVD++), then an optional MLP.
Item tower: the bag of the item's id and feature tokens, an optional MLP, and a bias that
is itself a bag over the same tokens, so a new item gets a bias from its features.
Unknown ids map to their field's OOV token, so every score can come from features alone.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from rankers.models.towers import MLP, BagEncoder


class UserTower(nn.Module):
    """tokens, weights [B, Tu]; history [B, H] (item index + 1, 0 = pad); history_weights [B, H]
    (1 = use the item, 0 = leave it out) -> [B, D]. The history bag is Σ w_j y_j / (Σ w_j)^alpha:
    alpha = 1 is the mean, alpha = 0.5 the FISM normalisation that lets longer histories speak louder."""

    def __init__(self, n_tokens: int, n_items: int, dim: int, use_history: bool, mlp: List[int],
                 dropout: float = 0.0, history_alpha: float = 1.0):
        super().__init__()
        self.features = BagEncoder(n_tokens, dim)
        self.use_history = use_history
        self.history_alpha = history_alpha
        self.history = BagEncoder(n_items + 1, dim)
        self.mlp = MLP(dim, mlp, dropout) if mlp else nn.Identity()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor, history: torch.Tensor,
                history_weights: torch.Tensor) -> torch.Tensor:
        x = self.features(tokens, weights)
        if self.use_history:
            n = history_weights.sum(1, keepdim=True).clamp_min(1.0)
            x = x + self.history(history, history_weights / n.pow(self.history_alpha))
        x = self.mlp(x)
        return x


class ItemTower(nn.Module):
    """tokens, weights [B, Ti] -> (vectors [B, D], bias [B])."""

    def __init__(self, n_tokens: int, dim: int, mlp: List[int], use_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.features = BagEncoder(n_tokens, dim)
        self.bias = BagEncoder(n_tokens, 1, init_std=0.0)
        self.use_bias = use_bias
        self.mlp = MLP(dim, mlp, dropout) if mlp else nn.Identity()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.features(tokens, weights)
        x = self.mlp(x)
        b = self.bias(tokens, weights).squeeze(-1)
        if not self.use_bias:
            b = torch.zeros_like(b)
        return x, b


def bag_membership(history: torch.Tensor, history_weights: torch.Tensor, n_items: int) -> torch.Tensor:
    """1.0 where an item is in the user's bag: history [B, H] (item index + 1, 0 = padding),
    history_weights [B, H] (> 0 = in the bag) -> [B, n_items]. TorchScript-able (export uses it)."""
    member = torch.zeros(history.shape[0], n_items + 1, dtype=torch.float32, device=history.device)
    member = member.scatter(1, history, (history_weights > 0).to(torch.float32))  # duplicates count once
    return member[:, 1:]


class TwoTower(nn.Module):
    """Two-tower scorer. Built from data sizes plus hyperparameters (``configs/model/*.yaml``).

    Args:
        n_user_tokens, n_item_tokens, n_items: vocabulary sizes (from RankingData.sizes()).
        dim: embedding size D. use_history: add the history bag to the user vector.
        user_mlp / item_mlp: hidden sizes of optional residual MLPs ([] = none).
        use_bias: learn an item bias. dropout: inside the MLPs.
        history_alpha: the history bag is divided by (its length)^alpha (1 = mean).
        repeat: learn a score offset for items already in the user's history bag (repeat
            consumption: positive where people buy again, negative where, as with films, a
            rated item is not rated twice). Not a dot product: served by index, see
            ``repeat_offsets``.
        (Id and history dropout, which train the cold-start path, are applied by the data pipeline.)
    """

    def __init__(self, n_user_tokens: int, n_item_tokens: int, n_items: int, dim: int = 64,
                 use_history: bool = True, user_mlp: Optional[List[int]] = None,
                 item_mlp: Optional[List[int]] = None, use_bias: bool = True, dropout: float = 0.0,
                 history_alpha: float = 1.0, repeat: bool = False):
        super().__init__()
        if dim < 1:
            raise ValueError(f"model.dim must be >= 1, got {dim}")
        self.hparams = dict(n_user_tokens=n_user_tokens, n_item_tokens=n_item_tokens, n_items=n_items, dim=dim,
                            use_history=use_history, user_mlp=list(user_mlp or []), item_mlp=list(item_mlp or []),
                            use_bias=use_bias, dropout=dropout, history_alpha=history_alpha, repeat=bool(repeat))
        self.dim = dim
        self.repeat = nn.Parameter(torch.zeros(())) if repeat else None
        self.user_tower = UserTower(n_user_tokens, n_items, dim, use_history, list(user_mlp or []), dropout,
                                    history_alpha)
        self.item_tower = ItemTower(n_item_tokens, dim, list(item_mlp or []), use_bias, dropout)

    def user_vectors(self, tokens, weights, history, history_weights) -> torch.Tensor:
        """-> [B, D]."""
        return self.user_tower(tokens, weights, history, history_weights)

    def item_vectors(self, tokens, weights) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (vectors [N, D], bias [N])."""
        return self.item_tower(tokens, weights)

    def repeat_offsets(self, history: torch.Tensor, history_weights: torch.Tensor,
                       items: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """The repeat term: ``repeat`` where an item is in the user's bag, else 0 (None without it).

        history [B, H] (item index + 1, 0 = padding), history_weights [B, H] (> 0 = in the bag);
        items: None for the whole catalogue -> [B, n_items], or item indices [B, M] -> [B, M].
        """
        if self.repeat is None:
            return None
        return self.repeat * self.bag_membership(history, history_weights, items)

    def bag_membership(self, history: torch.Tensor, history_weights: torch.Tensor,
                       items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """1.0 where an item is in the user's bag, else 0; arguments and shapes as ``repeat_offsets``."""
        if items is None:
            return bag_membership(history, history_weights, self.hparams["n_items"])
        in_bag = history_weights > 0
        return ((history[:, None, :] == items[:, :, None] + 1) & in_bag[:, None, :]).any(-1).to(torch.float32)

    def forward(self, user_tokens, user_weights, history, history_weights, item_tokens, item_weights,
                items: Optional[torch.Tensor] = None):
        """Scores of every user against every given item: -> [B, N]. ``items`` [N]: the global
        indices of the given items (needed by the repeat term; default: the whole catalogue)."""
        u = self.user_vectors(user_tokens, user_weights, history, history_weights)
        v, b = self.item_vectors(item_tokens, item_weights)
        s = u @ v.T + b[None, :]
        if self.repeat is not None:
            if items is None:
                s = s + self.repeat_offsets(history, history_weights)
            else:
                s = s + self.repeat_offsets(history, history_weights, items.expand(s.shape[0], -1))
        return s
