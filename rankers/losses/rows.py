"""The pairwise objective over user rows: P positives, each ranked against every column of its row.

A training row is one user (with some of its positives left out of its history bag) scored
against K columns: the whole catalogue, or the negatives a batch shares. Scoring is then one
[R, K] matrix for R rows, however many positives each row holds; the loss compares each
positive with its row's columns.

``row_pairwise_loss`` is the objective of ``rankers.losses.objective.pairwise_loss`` on those
pairs. Where the C++ core has the loss and weighting (hinge or logistic, uniform or WARP
weights) it runs there, forward and gradient in two passes over each positive's row
(``rankers._C.pair_loss_rows``); otherwise, and as the reference it is tested against, torch
expands the pairs to [P, K] and calls ``pairwise_loss``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from rankers.losses.objective import pairwise_loss

FUSED_LOSSES = {"hinge": 0, "logistic": 1}
FUSED_WEIGHTINGS = {"uniform": 0, "warp": 1}

Graded = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Extra = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _check(scores: torch.Tensor, pos_score: torch.Tensor, pos_row: torch.Tensor, pos_grade: torch.Tensor,
           row_weight: torch.Tensor, graded: Graded) -> None:
    R, K = scores.shape
    P = pos_score.shape[0]
    for name, t in (("pos_row", pos_row), ("pos_grade", pos_grade), ("row_weight", row_weight)):
        if t.shape != (P,):
            raise ValueError(f"row_pairwise_loss: {name} must have shape ({P},), got {tuple(t.shape)}")
    g_row, g_col, g_grade = graded
    if not (g_row.shape == g_col.shape == g_grade.shape and g_row.dim() == 1):
        raise ValueError("row_pairwise_loss: graded rows, columns and grades must be 1-D of one length")
    for name, t, hi in (("pos_row", pos_row, R), ("graded rows", g_row, R), ("graded columns", g_col, K)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= hi):
            raise IndexError(f"row_pairwise_loss: {name} outside [0, {hi})")


def _by_row(rows: torch.Tensor) -> Optional[torch.Tensor]:
    """A stable order that sorts ``rows`` [n], or None when they are sorted already (batches are)."""
    if len(rows) < 2 or bool((rows[1:] >= rows[:-1]).all()):
        return None
    return torch.sort(rows, stable=True).indices


class _FusedRows(torch.autograd.Function):
    """The C++ pass: loss = Σ w ℓ / Σ w; gradients for scores [R, K] and pos_score [P]."""

    @staticmethod
    def forward(ctx, scores, pos_score, row_start, pos_grade, pos_weight, graded_start, graded_col,
                graded_grade, col_weight, loss_code, weighting_code, margin, warp_margin, n_items):
        from rankers import _C

        R, K = scores.shape
        s = scores.detach().contiguous()
        grad_scores = torch.empty((R, K), dtype=torch.float32)
        grad_pos = torch.empty(pos_score.shape[0], dtype=torch.float32)
        row_loss, row_w = np.empty(R, np.float64), np.empty(R, np.float64)
        _C.pair_loss_rows(s.numpy(), pos_score.detach().contiguous().numpy(), row_start.numpy(),
                          pos_grade.numpy(), pos_weight.numpy(), graded_start.numpy(), graded_col.numpy(),
                          graded_grade.numpy(), col_weight.numpy(), loss_code, weighting_code, float(margin),
                          float(warp_margin),
                          int(n_items), row_loss, row_w, grad_scores.numpy(), grad_pos.numpy(),
                          torch.get_num_threads())
        total = max(float(row_w.sum()), 1e-12)
        ctx.save_for_backward(grad_scores, grad_pos)
        ctx.total = total
        return torch.tensor(float(row_loss.sum()) / total, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        grad_scores, grad_pos = ctx.saved_tensors
        scale = grad / ctx.total
        return (grad_scores * scale, grad_pos * scale) + (None,) * 12


def fusable(pair_loss: str, weighting: str) -> bool:
    """Whether the C++ core computes this loss and weighting."""
    return pair_loss in FUSED_LOSSES and weighting in FUSED_WEIGHTINGS


def row_pairwise_loss(scores: Optional[torch.Tensor], pos_score: torch.Tensor, pos_row: torch.Tensor,
                      pos_grade: torch.Tensor, row_weight: torch.Tensor, graded: Graded, *,
                      pair_loss: str = "logistic", weighting: str = "uniform", margin: float | None = None,
                      n_items: int = 1000, temperature: float = 1.0, extra: Optional[Extra] = None,
                      col_weight: Optional[torch.Tensor] = None, fused: Optional[bool] = None) -> torch.Tensor:
    """Weighted pairwise loss (scalar) of positives against the columns of their rows.

    Args:
        scores [R, K]: each row's scores of the K columns (None: no shared columns, K = 0).
        pos_score [P], pos_row [P] (the row of each positive, in [0, R)), pos_grade [P], row_weight [P].
        graded: (rows [G], columns [G], grades [G]): the columns a row's user graded in training
            (every other column has grade 0). A column graded at or above the positive's grade
            is not a pair.
        extra: per-positive negatives (scores [P, M], grades [P, M], mask [P, M]) ranked with the
            columns (torch path).
        pair_loss, weighting, margin, n_items, temperature: as ``pairwise_loss``.
        col_weight [K]: importance weights of columns drawn from a non-uniform proposal (None:
            uniform draws, every column 1): WARP's violator and pair counts become weighted sums
            (estimates of the catalogue's), and each pair's loss is multiplied by its column's
            weight. C++ pass only.
        fused: force the C++ pass (True) or torch (False); None: C++ where it applies.
    """
    P = pos_score.shape[0]
    if scores is None:
        scores = pos_score.new_zeros((int(pos_row.max()) + 1 if P else 0, 0))
    _check(scores, pos_score, pos_row, pos_grade, row_weight, graded)
    can_fuse = (fusable(pair_loss, weighting) and extra is None and scores.device.type == "cpu"
                and scores.dtype == torch.float32 and scores.shape[1] > 0)
    if col_weight is not None and (not can_fuse or fused is False):
        raise ValueError(f"row_pairwise_loss: column weights (loss.negatives.shared_popularity > 0) take the C++ "
                         f"pass: hinge/logistic loss with uniform/warp weights on CPU float32 scores and no "
                         f"per-positive negatives, got {pair_loss}/{weighting}")
    if col_weight is not None and col_weight.shape != (scores.shape[1],):
        raise ValueError(f"row_pairwise_loss: col_weight must have shape ({scores.shape[1]},), "
                         f"got {tuple(col_weight.shape)}")
    ok = None if col_weight is None else torch.isfinite(col_weight) & (col_weight >= 0)
    if ok is not None and not bool(ok.all()):
        bad = int(torch.nonzero(~ok)[0])
        raise ValueError(f"row_pairwise_loss: col_weight must be finite and >= 0 (the C++ pass trusts it), "
                         f"column {bad} is {float(col_weight[bad])}")
    if fused and not can_fuse:
        raise ValueError(f"row_pairwise_loss: the C++ pass takes hinge/logistic loss with uniform/warp "
                         f"weights on CPU float32 scores and no per-positive negatives, "
                         f"got {pair_loss}/{weighting}")
    if can_fuse and fused is not False:
        R = scores.shape[0]
        by_row = _by_row(pos_row)  # the core walks each row's positives and graded columns as ranges
        pos_score, pos_grade, row_weight = (pos_score, pos_grade, row_weight) if by_row is None else \
            (pos_score[by_row], pos_grade[by_row], row_weight[by_row])
        row_start = torch.searchsorted(pos_row if by_row is None else pos_row[by_row], torch.arange(R + 1))
        g_row, g_col, g_grade = graded
        g_order = _by_row(g_row)
        if g_order is not None:
            g_row, g_col, g_grade = g_row[g_order], g_col[g_order], g_grade[g_order]
        graded_start = torch.searchsorted(g_row, torch.arange(R + 1))
        m = 1.0 if margin is None else margin
        loss_margin = margin if margin is not None else (1.0 if pair_loss == "hinge" else 0.0)
        f32 = lambda t: t.detach().to(torch.float32).contiguous()  # noqa: E731
        return _FusedRows.apply(scores, pos_score, row_start, f32(pos_grade), f32(row_weight), graded_start,
                                g_col.contiguous(), f32(g_grade),
                                f32(col_weight) if col_weight is not None else torch.zeros(0), FUSED_LOSSES[pair_loss],
                                FUSED_WEIGHTINGS[weighting], loss_margin, m, n_items)
    # torch: the pairs as [P, K] (and the per-positive negatives beside them)
    g = torch.zeros(scores.shape, dtype=pos_grade.dtype)
    g[graded[0], graded[1]] = graded[2].to(pos_grade.dtype)
    s_neg, g_neg = scores[pos_row], g[pos_row]
    mask = (g_neg < pos_grade[:, None]).to(pos_grade.dtype)
    if extra is not None:
        s_neg = torch.cat([extra[0], s_neg], 1)
        g_neg = torch.cat([extra[1], g_neg], 1)
        mask = torch.cat([extra[2], mask], 1)
    return pairwise_loss(pos_score, s_neg, pos_grade, g_neg, mask, row_weight, pair_loss, weighting, margin,
                         n_items, temperature)
