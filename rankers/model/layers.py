"""Building blocks of the towers: weighted token bags and MLPs (plain, scriptable nn.Modules),
and the torch.export-friendly form of a bag."""
from __future__ import annotations

import copy
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class _WeightedBag(torch.autograd.Function):
    """``F.embedding_bag(mode="sum")`` with per-sample weights, and a faster table gradient: torch's
    CPU backward sorts the tokens and walks them row by row (4 bags were a fifth of a MovieLens
    training step); here one C++ pass adds each entry into a dense gradient
    (``rankers._C.bag_backward``), or into one row per distinct token of a row-sparse COO
    gradient (sorted, as the optimiser takes it without a sort)."""

    @staticmethod
    def forward(ctx, table, tokens, weights, sparse):
        ctx.save_for_backward(tokens, weights)
        ctx.table_shape, ctx.sparse = table.shape, sparse
        return F.embedding_bag(tokens, table, per_sample_weights=weights, mode="sum", padding_idx=0)

    @staticmethod
    def backward(ctx, grad):
        from rankers import _C

        tokens, weights = ctx.saved_tensors
        grad = grad.contiguous()
        if ctx.sparse:
            # One row per distinct token, summed in C++: a batch's item bags repeat their feature
            # tokens (~30,000 entries on ~4,600 rows), and a per-entry COO made the optimiser sort
            # and add them all. Slot 0 of ``rows`` is the padding token 0 (gets no gradient).
            rows, local = torch.unique(torch.cat([tokens.new_zeros(1), tokens.reshape(-1)]), return_inverse=True)
            values = torch.zeros((len(rows), grad.shape[1]), dtype=grad.dtype)
            _C.bag_backward(local[1:].reshape(tokens.shape).numpy(), weights.numpy(), grad.numpy(), 0, values.numpy(),
                            torch.get_num_threads())
            # rows from embedding_bag's checked forward, sorted and distinct
            table_grad = torch.sparse_coo_tensor(rows[None, 1:], values[1:], ctx.table_shape,
                                                 check_invariants=False, is_coalesced=True)
        else:
            table_grad = torch.zeros(ctx.table_shape, dtype=grad.dtype)
            # tokens are in range: the forward's embedding_bag checked them
            _C.bag_backward(tokens.numpy(), weights.numpy(), grad.numpy(), 0, table_grad.numpy(),
                            torch.get_num_threads())
        return table_grad, None, None, None


class BagEncoder(nn.Module):
    """Weighted sum of token embeddings. tokens int64 [B, T] (0 = padding), weights [B, T] -> [B, D].
    ``sparse``: gradients only for the rows a batch touches (a table of a million users would
    otherwise be rewritten by the optimizer at every step); needs an optimizer that takes
    sparse gradients (Adagrad, SparseAdam). Training on CPU takes ``_WeightedBag``'s gradient;
    evaluation, model.ts and model.pt2 run the plain ``nn.EmbeddingBag``."""

    def __init__(self, n_tokens: int, dim: int, init_std: float = 0.05, sparse: bool = False):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_tokens, dim, mode="sum", padding_idx=0, sparse=sparse)
        nn.init.normal_(self.embedding.weight, 0.0, init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.training:
            return self._train_bag(tokens, weights)
        return self.embedding(tokens, per_sample_weights=weights)

    @torch.jit.unused
    def _train_bag(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        table = self.embedding.weight
        if (table.device.type != "cpu" or table.dtype != torch.float32 or weights.requires_grad
                or tokens.dim() != 2 or tokens.dtype != torch.int64):
            return self.embedding(tokens, per_sample_weights=weights)
        return _WeightedBag.apply(table, tokens.contiguous(), weights.to(torch.float32).contiguous(),
                                  self.embedding.sparse)


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
