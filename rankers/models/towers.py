"""Building blocks of the scorers: weighted token bags and MLPs (plain, scriptable nn.Modules)."""
from __future__ import annotations

from typing import List

import torch
from torch import nn


class BagEncoder(nn.Module):
    """Weighted sum of token embeddings. tokens int64 [B, T] (0 = padding), weights [B, T] -> [B, D]."""

    def __init__(self, n_tokens: int, dim: int, init_std: float = 0.05):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_tokens, dim, mode="sum", padding_idx=0)
        nn.init.normal_(self.embedding.weight, 0.0, init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens, per_sample_weights=weights)


class MLP(nn.Module):
    """dim -> hidden... -> dim with ReLU, plus a residual path so an MLP never hurts at init."""

    def __init__(self, dim: int, hidden: List[int], dropout: float = 0.0):
        super().__init__()
        layers: List[nn.Module] = []
        d = dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = h
        layers.append(nn.Linear(d, dim))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)
