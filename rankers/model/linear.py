"""The paper's scorer: a sparse linear model φ(x) = wᵀx over the features of a (context,
candidate) row (Freno et al., KDD 2015). No bias: a constant shifts every score of a list alike.
Plain nn.Module, scriptable; the elastic-net optimisers (rankers.training.proximal) make w sparse.
"""

from typing import Union

import torch
from torch import nn

SPARSE_FROM = 1 << 16  # sparse_grad="auto": sparse gradients from this many features on


class _Gather(torch.autograd.Function):
    """w[index] whose gradient is a sparse [F] tensor (the touched entries only): what lets the
    optimisers update in time linear in a batch's features (embedding(sparse=True) for a 1-D w)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.n = weight.shape[0]
        return weight[index]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (index,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(index.unsqueeze(0), grad_out, (ctx.n,), check_invariants=False), None


class SparseLinear(nn.Module):
    """weight [F] (starts at 0: an untrained model ranks every list in its given order).

    forward: the stored features of R rows as COO triples, index int64 [nnz] (feature),
    value float32 [nnz], row int64 [nnz] (0..n_rows-1) -> scores [n_rows].
    sparse_grad: training gives w a sparse gradient (True, False, or "auto": from
    ``SPARSE_FROM`` features on); the optimisers then update lazily.
    """

    sparse_grad: bool

    def __init__(self, n_features: int, sparse_grad: Union[bool, str] = False):
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if sparse_grad not in (True, False, "auto"):
            raise ValueError(f"sparse_grad must be true, false or auto, got {sparse_grad!r}")
        self.weight = nn.Parameter(torch.zeros(n_features))
        self.sparse_grad = n_features >= SPARSE_FROM if sparse_grad == "auto" else bool(sparse_grad)

    def forward(self, index: torch.Tensor, value: torch.Tensor, row: torch.Tensor, n_rows: int) -> torch.Tensor:
        if self.sparse_grad and self.training and self.weight.requires_grad:
            w = self._sparse_gather(index)
        else:
            w = self.weight[index]
        return torch.zeros(n_rows, dtype=self.weight.dtype).index_add(0, row, value * w)

    @torch.jit.unused
    def _sparse_gather(self, index: torch.Tensor) -> torch.Tensor:
        return _Gather.apply(self.weight, index)

    def nonzeros(self) -> int:
        return int((self.weight.detach() != 0).sum())
