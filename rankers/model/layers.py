"""Building blocks of the towers: weighted token bags and MLPs (plain, scriptable nn.Modules),
and the torch.export-friendly form of a bag."""
from __future__ import annotations

import copy
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class BagEncoder(nn.Module):
    """Weighted sum of token embeddings. tokens int64 [B, T] (0 = padding), weights [B, T] -> [B, D].
    ``sparse``: gradients only for the rows a batch touches (a table of a million users would
    otherwise be rewritten by the optimizer at every step); needs an optimizer that takes
    sparse gradients (Adagrad, SparseAdam)."""

    def __init__(self, n_tokens: int, dim: int, init_std: float = 0.05, sparse: bool = False):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_tokens, dim, mode="sum", padding_idx=0, sparse=sparse)
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


class DenseBag(nn.Module):
    """``nn.EmbeddingBag(mode="sum")`` as gather, weight and sum.

    torch.export's decomposition of EmbeddingBag guards the batch and bag sizes (>= 2), so
    the model.pt2 graph uses this equivalent instead. Padding tokens contribute nothing, as
    in EmbeddingBag. input int64 [B, T], per_sample_weights float32 [B, T] -> [B, D].
    """

    def __init__(self, bag: nn.EmbeddingBag):
        super().__init__()
        if bag.mode != "sum":
            raise ValueError(f"model.pt2 supports EmbeddingBag(mode='sum') only, got mode={bag.mode!r}")
        self.weight = bag.weight
        self.padding_idx = -1 if bag.padding_idx is None else int(bag.padding_idx)

    def forward(self, input: torch.Tensor, offsets: Optional[torch.Tensor] = None,
                per_sample_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        w = (input != self.padding_idx).to(self.weight.dtype)
        if per_sample_weights is not None:
            w = w * per_sample_weights
        return (F.embedding(input, self.weight) * w.unsqueeze(-1)).sum(1)


def export_friendly(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode with every EmbeddingBag replaced by a ``DenseBag``."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.EmbeddingBag):
                setattr(parent, name, DenseBag(child))
    return module.eval()
