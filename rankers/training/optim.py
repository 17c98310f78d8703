"""Optimizers for embedding tables with row-sparse gradients (``model.sparse=true``).

``Adagrad`` is ``torch.optim.Adagrad`` (lr_decay 0, no weight decay) with the update of a
sparse gradient done in one pass by the C++ core (``rankers._C.adagrad_rows``): torch's sparse
path coalesces the gradient, then runs four sparse-tensor ops, each a pass over the touched
rows with per-row overhead on CPU. At a shop's scale (a batch touches ~60,000 rows of a
200,000-row table) that was 77% of a training step. Dense gradients (and any tensor off the
CPU) take torch's own formulas, so results equal torch's within float rounding.
"""
from __future__ import annotations

from typing import Iterable

import torch

from rankers import _C


class Adagrad(torch.optim.Optimizer):
    """Adagrad: state += g²; param -= lr · g / (√state + eps), per element.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        eps: added to √state (the denominator).
        initial_accumulator_value: the state's starting value.
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, eps: float = 1e-10,
                 initial_accumulator_value: float = 0.0):
        if not lr > 0:
            raise ValueError(f"Adagrad: lr must be > 0, got {lr}")
        if not eps >= 0:
            raise ValueError(f"Adagrad: eps must be >= 0, got {eps}")
        if not initial_accumulator_value >= 0:
            raise ValueError(f"Adagrad: initial_accumulator_value must be >= 0, got {initial_accumulator_value}")
        super().__init__(params, dict(lr=lr, eps=eps, initial_accumulator_value=initial_accumulator_value))
        for group in self.param_groups:
            for p in group["params"]:
                # Named as torch's Adagrad names it, so a checkpoint's state reads the same.
                self.state[p]["sum"] = torch.full_like(p, group["initial_accumulator_value"],
                                                       memory_format=torch.preserve_format)
                self.state[p]["step"] = torch.tensor(0.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                g, acc = p.grad, state["sum"]
                if g.is_sparse:
                    _sparse_update(p, acc, g, lr, eps)
                else:
                    acc.addcmul_(g, g, value=1)
                    p.addcdiv_(g, acc.sqrt().add_(eps), value=-lr)
        return loss


def _sparse_update(p: torch.Tensor, acc: torch.Tensor, g: torch.Tensor, lr: float, eps: float) -> None:
    """Adagrad for a sparse COO gradient of a 2-D table p [N, d] (acc: its state [N, d])."""
    rows, values = g._indices(), g._values()
    fast = (p.device.type == "cpu" and p.dtype == torch.float32 and p.dim() == 2 and rows.shape[0] == 1
            and values.dim() == 2 and p.is_contiguous() and acc.is_contiguous())
    if not fast:  # torch's own sparse formulas
        g = g.coalesce()
        rows, values = g._indices(), g._values()
        acc.add_(torch.sparse_coo_tensor(rows, values.pow(2), acc.shape))
        std = acc.sparse_mask(g)._values().sqrt_().add_(eps)
        p.add_(torch.sparse_coo_tensor(rows, values / std, p.shape), alpha=-lr)
        return
    if rows.numel() == 0:
        return
    rows = rows[0]
    if int(rows.min()) < 0 or int(rows.max()) >= p.shape[0]:  # the core trusts its input
        raise IndexError(f"Adagrad: sparse gradient rows outside [0, {p.shape[0]})")
    # the training bags hand over distinct sorted rows (autograd drops the coalesced flag on the
    # way to .grad, so the check is on the rows): nothing to sort
    if len(rows) < 2 or bool((rows[1:] > rows[:-1]).all()):
        sorted_rows, order = rows, torch.arange(len(rows))
    else:  # stable: a row's entries are summed in the order autograd produced them
        sorted_rows, order = torch.sort(rows, stable=True)
    _C.adagrad_rows(p.detach().numpy(), acc.numpy(), sorted_rows.numpy(), order.numpy(),
                    values.detach().contiguous().numpy(), float(lr), float(eps), torch.get_num_threads())
