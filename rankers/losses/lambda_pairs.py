"""The paper's objective within impression lists: for every pair (i, j) of a list with
y_i > y_j, a weight Δ_ij (how much the metric changes if i and j swap places in the current
ranking) times a pair loss of s_i - s_j (Freno et al., KDD 2015; LambdaRank's Δ).

Pure functions on padded lists: ``scores`` [B, M] (a graph), ``labels`` [B, M], ``mask`` [B, M]
bool (False on padding). The weights are computed without gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DELTAS = ("ndcg", "recall", "none")
PAIR_LOSSES = ("logistic", "hinge")


def _positions(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1-based position of each row in its list's current ranking [B, M] (padding last)."""
    s = scores.detach().masked_fill(~mask, float("-inf"))
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(1, s.shape[1] + 1, device=s.device).expand_as(order))
    return pos


def delta_ndcg(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """|ΔNDCG@k| of swapping i and j [B, M, M]: |g_i - g_j| |d(p_i) - d(p_j)| / IDCG@k, gains
    2^y - 1, d(p) = 1/log2(p + 1) for p <= k, else 0."""
    pos = _positions(scores, mask).to(scores.dtype)
    disc = torch.where(pos <= k, 1.0 / torch.log2(pos + 1.0), torch.zeros_like(pos))
    gain = torch.where(mask, torch.exp2(labels) - 1.0, torch.zeros_like(labels))
    ideal = torch.sort(gain, dim=1, descending=True).values[:, :k]
    idcg = (ideal / torch.log2(torch.arange(2, ideal.shape[1] + 2, dtype=scores.dtype))).sum(1).clamp_min(1e-12)
    return ((gain[:, :, None] - gain[:, None, :]).abs() * (disc[:, :, None] - disc[:, None, :]).abs()
            / idcg[:, None, None])


def delta_recall(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, k: int,
                 threshold: float = 1.0) -> torch.Tensor:
    """|ΔRecall@k| of swapping i and j [B, M, M]: nonzero when one is relevant (label >=
    threshold) and the other not, and exactly one of them is in the top k; 1 / relevant rows."""
    pos = _positions(scores, mask)
    top = (pos <= k).to(scores.dtype)
    rel = ((labels >= threshold) & mask).to(scores.dtype)
    n = rel.sum(1).clamp_min(1.0)
    return ((rel[:, :, None] - rel[:, None, :]).abs() * (top[:, :, None] - top[:, None, :]).abs()
            / n[:, None, None])


def lambda_pair_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, *, k: int = 10,
                     delta: str = "ndcg", pair_loss: str = "logistic", margin: float = 1.0) -> torch.Tensor:
    """Σ over lists and pairs y_i > y_j of Δ_ij ℓ(s_i - s_j), divided by the number of lists (a
    scalar). ℓ: logistic log(1 + exp(-(s_i - s_j))) or hinge max(0, margin - (s_i - s_j));
    Δ: ``delta_ndcg``, ``delta_recall`` or 1 (``none``: every pair alike, a RankSVM)."""
    if delta not in DELTAS or pair_loss not in PAIR_LOSSES:
        raise ValueError(f"delta must be one of {DELTAS} and pair_loss one of {PAIR_LOSSES}, "
                         f"got {delta!r}, {pair_loss!r}")
    y = labels.to(scores.dtype)
    pairs = (y[:, :, None] > y[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    with torch.no_grad():
        w = {"ndcg": lambda: delta_ndcg(scores, y, mask, k), "recall": lambda: delta_recall(scores, y, mask, k),
             "none": lambda: torch.ones_like(pairs, dtype=scores.dtype)}[delta]()
    d = scores[:, :, None] - scores[:, None, :]
    loss = F.softplus(-d) if pair_loss == "logistic" else F.relu(margin - d)
    return (w * loss * pairs).sum() / max(1, scores.shape[0])
