"""Pair weights w(u, i, j) for the sampled list of one positive i against M negatives j.

All functions share one signature and return weights [B, M] with no gradient:
    s_pos [B]     score of the positive
    s_neg [B, M]  scores of the negatives
    g_pos [B]     grade of the positive
    g_neg [B, M]  grades of the negatives (0 = unobserved)
    mask  [B, M]  1 for valid pairs, 0 for padding / invalid
Gains are 2^grade - 1 (the NDCG gain), so unobserved items have gain 0.
"""
from __future__ import annotations

import math

import torch


def gain(grade: torch.Tensor) -> torch.Tensor:
    """NDCG gain 2^g - 1. [...] -> [...]."""
    return torch.exp2(grade) - 1.0


@torch.no_grad()
def uniform(s_pos, s_neg, g_pos, g_neg, mask, **_) -> torch.Tensor:
    """Every valid pair weighs 1. -> [B, M]."""
    return mask.to(s_neg.dtype)


@torch.no_grad()
def graded(s_pos, s_neg, g_pos, g_neg, mask, **_) -> torch.Tensor:
    """Gain difference G(g_i) - G(g_j), clamped at 0: a purchase over an unseen item
    outweighs a purchase over a viewed one. -> [B, M]."""
    return (gain(g_pos)[:, None] - gain(g_neg)).clamp_min(0.0) * mask


def _ranks_desc(scores: torch.Tensor) -> torch.Tensor:
    """1-based rank of each entry in its row, by score descending, ties by position. [B, L] -> [B, L]."""
    order = torch.argsort(-scores, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order))
    return ranks


@torch.no_grad()
def lambda_ndcg(s_pos, s_neg, g_pos, g_neg, mask, **_) -> torch.Tensor:
    """|ΔNDCG| of swapping i and j in the ranking of the sampled list {i} ∪ {j_1..j_M}
    (LambdaRank). Masked negatives are ranked last with gain 0. -> [B, M]."""
    neg_inf = torch.finfo(s_neg.dtype).min
    scores = torch.cat([s_pos[:, None], torch.where(mask > 0, s_neg, torch.full_like(s_neg, neg_inf))], 1)
    gains = torch.cat([gain(g_pos)[:, None], gain(g_neg) * mask], 1)
    disc = 1.0 / torch.log2(1.0 + _ranks_desc(scores).to(scores.dtype))
    ideal = torch.sort(gains, dim=1, descending=True).values
    idcg = (ideal / torch.log2(torch.arange(2, gains.shape[1] + 2, device=gains.device, dtype=gains.dtype))).sum(1)
    delta = (gains[:, :1] - gains[:, 1:]).abs() * (disc[:, :1] - disc[:, 1:]).abs()
    return delta / idcg.clamp_min(1e-12)[:, None] * mask


@torch.no_grad()
def warp(s_pos, s_neg, g_pos, g_neg, mask, n_items: int = 1000, margin: float = 1.0, **_) -> torch.Tensor:
    """WARP: the positive's rank over the catalogue is estimated from the share of sampled
    negatives that violate the margin, R = floor((n_items - 1) * violators / M), and the
    rank loss Φ(R) = Σ_{r=1..R} 1/r is spread over the violating pairs. -> [B, M].
    The C++ pass of ``rankers.losses.rows`` computes the same weights (tested equal): change both."""
    viol = ((s_neg + margin > s_pos[:, None]) & (mask > 0)).to(s_neg.dtype)
    n_viol = viol.sum(1)
    m = mask.sum(1).clamp_min(1.0)
    rank = torch.floor((n_items - 1) * n_viol / m)
    # Φ(R) = H_R = ψ(R + 1) + γ exactly (ψ the digamma function); Φ(0) = 0.
    harmonic = torch.special.digamma(rank + 1.0) + 0.5772156649015329
    return viol * (harmonic / n_viol.clamp_min(1.0))[:, None]


@torch.no_grad()
def adversarial(s_pos, s_neg, g_pos, g_neg, mask, temperature: float = 1.0, **_) -> torch.Tensor:
    """Self-adversarial: each negative weighs softmax(s_uj / T) over the row's valid negatives,
    scaled to mean 1, so the hardest negatives dominate (T -> inf is uniform). With catalogue
    negatives this is the pairwise analogue of a full softmax. -> [B, M]."""
    logits = torch.where(mask > 0, s_neg / temperature, torch.full_like(s_neg, float("-inf")))
    p = torch.softmax(logits, dim=1).nan_to_num(0.0)
    return p * mask.sum(1, keepdim=True)


WEIGHTINGS = {"uniform": uniform, "graded": graded, "lambda": lambda_ndcg, "warp": warp,
              "adversarial": adversarial}


def get_weighting(name: str):
    try:
        return WEIGHTINGS[name]
    except KeyError:
        raise ValueError(f"loss.weighting must be one of {sorted(WEIGHTINGS)}, got {name!r}") from None


def harmonic_exact(r: int) -> float:
    """Σ_{k=1..r} 1/k, the reference for tests of the closed form above."""
    return math.fsum(1.0 / k for k in range(1, r + 1))
