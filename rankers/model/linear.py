"""The paper's scorer: a sparse linear model φ(x) = wᵀx over the features of a (context,
candidate) row (Freno et al., KDD 2015). No bias: a constant shifts every score of a list alike.
Plain nn.Module, scriptable; the elastic-net optimisers (rankers.training.proximal) make w sparse.
"""
from __future__ import annotations

import torch
from torch import nn


class SparseLinear(nn.Module):
    """weight [F] (starts at 0: an untrained model ranks every list in its given order).

    forward: the stored features of R rows as COO triples, index int64 [nnz] (feature),
    value float32 [nnz], row int64 [nnz] (0..n_rows-1) -> scores [n_rows].
    """

    def __init__(self, n_features: int):
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.weight = nn.Parameter(torch.zeros(n_features))

    def forward(self, index: torch.Tensor, value: torch.Tensor, row: torch.Tensor, n_rows: int) -> torch.Tensor:
        return torch.zeros(n_rows, dtype=self.weight.dtype).index_add(0, row, value * self.weight[index])

    def nonzeros(self) -> int:
        return int((self.weight.detach() != 0).sum())
