"""The seed paper's objective: Σ w(u,i,j)·ℓ(s_ui − s_uj) + λ1‖θ‖₁ + λ2‖θ‖².

The weighted sum is normalised by the total weight of the batch, so that the weighting
scheme moves emphasis between pairs without changing the step size (and λ keeps one
meaning across weightings); per-row weights multiply in before normalisation.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch

from rankers.losses.pair_loss import LIST_LOSSES, get_pair_loss
from rankers.losses.weighting import get_weighting


def pairwise_loss(s_pos: torch.Tensor, s_neg: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor,
                  mask: torch.Tensor, row_weight: torch.Tensor | None = None, pair_loss: str = "logistic",
                  weighting: str = "uniform", margin: float | None = None, n_items: int = 1000,
                  temperature: float = 1.0) -> torch.Tensor:
    """Weighted pairwise ranking loss (scalar).

    Args:
        s_pos [B], s_neg [B, M]: scores; g_pos [B], g_neg [B, M]: grades; mask [B, M]: valid pairs;
        row_weight [B]: per-row weights (None = 1).
        pair_loss: 'logistic' or 'hinge' (per pair), or 'softmax' (per positive, over its pairs:
            normalised by the rows' weight, not the pairs').
        weighting: 'uniform', 'graded', 'lambda', 'warp' or 'adversarial'.
        margin: for hinge (default 1) and logistic (default 0); also WARP's violation margin.
        n_items: catalogue size, for WARP's rank estimate; temperature: for 'adversarial' and 'softmax'.
    """
    loss_fn = get_pair_loss(pair_loss)
    w = get_weighting(weighting)(s_pos, s_neg, g_pos, g_neg, mask, n_items=n_items,
                                 margin=1.0 if margin is None else margin, temperature=temperature)
    if pair_loss in LIST_LOSSES:  # one term per positive: rows weigh by row_weight, pairs inside by w
        rw = torch.ones_like(s_pos) if row_weight is None else row_weight
        rw = rw * (w.sum(1) > 0)
        return (rw * loss_fn(s_pos[:, None] - s_neg, w, temperature)).sum() / rw.sum().clamp_min(1e-12)
    if row_weight is not None:
        w = w * row_weight[:, None]
    kw = {} if margin is None else {"margin": margin}
    ell = loss_fn(s_pos[:, None] - s_neg, **kw)
    return (w * ell).sum() / w.sum().clamp_min(1e-12)


def elastic_net(params: Iterable[torch.Tensor], l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """λ1 Σ|θ| + λ2 Σθ² over ``params`` (scalar)."""
    total = None
    for p in params:
        term = 0.0
        if l1:
            term = term + l1 * p.abs().sum()
        if l2:
            term = term + l2 * p.pow(2).sum()
        if l1 or l2:
            total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


class PairwiseObjective:
    """Config holder (``rankers/conf/loss/*.yaml``, where the defaults live) that applies the pure
    functions above.

    ``negatives`` defines the pair set the sum runs over (counts per positive of uniform,
    popular and own lower-graded negatives, or ``catalogue: true`` for all items); the data
    pipeline draws the pairs (rankers.training.sampling).
    """

    def __init__(self, *, pair_loss: str, weighting: str, l1: float, l2: float, margin: float | None,
                 temperature: float, negatives: Mapping, user_power: float):
        get_pair_loss(pair_loss)
        get_weighting(weighting)
        if l1 < 0 or l2 < 0:
            raise ValueError(f"loss.l1 and loss.l2 must be >= 0, got {l1}, {l2}")
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        self.pair_loss, self.weighting, self.l1, self.l2, self.margin = pair_loss, weighting, l1, l2, margin
        self.temperature = temperature
        if not 0.0 <= user_power <= 1.0:
            raise ValueError(f"loss.user_power must be in [0, 1], got {user_power}")
        self.user_power = float(user_power)
        self.negatives = dict(negatives)

    def __call__(self, s_pos, s_neg, g_pos, g_neg, mask, row_weight=None, n_items: int = 1000,
                 user_positives=None):
        """``user_positives`` [B]: the row's user's count of training positives n_u; with
        ``user_power`` p each row weighs n_u^-p (0: every positive alike, the paper's sum;
        1: every user alike, as the per-user metrics average)."""
        return pairwise_loss(s_pos, s_neg, g_pos, g_neg, mask, self._row_weight(row_weight, user_positives),
                             self.pair_loss, self.weighting, self.margin, n_items, self.temperature)

    def _row_weight(self, row_weight, user_positives):
        """Sample weights [B] (None = 1) times n_u^-user_power; None when both are 1."""
        if self.user_power and user_positives is not None:
            w_user = user_positives.clamp_min(1.0).pow(-self.user_power)
            return w_user if row_weight is None else row_weight * w_user
        return row_weight

    def rows(self, scores, pos_score, pos_row, pos_grade, graded, row_weight, n_items: int,
             user_positives=None, extra=None, col_weight=None):
        """The objective over user rows (``rankers.losses.rows.row_pairwise_loss``): scores [R, K]
        of each row's columns, positives [P] in rows pos_row [P], the rows' graded columns as COO,
        optional per-positive negatives ``extra`` and importance weights of the columns
        ``col_weight`` [K]; rows weigh as in ``__call__``."""
        from rankers.losses.rows import row_pairwise_loss

        w = self._row_weight(row_weight, user_positives)
        w = torch.ones_like(pos_score) if w is None else w
        return row_pairwise_loss(scores, pos_score, pos_row, pos_grade, w.detach(), graded,
                                 pair_loss=self.pair_loss, weighting=self.weighting, margin=self.margin,
                                 n_items=n_items, temperature=self.temperature, extra=extra,
                                 col_weight=col_weight)

    def regularizer(self, params) -> torch.Tensor:
        return elastic_net(params, self.l1, self.l2)
