"""Pair losses ℓ(d) on score differences d = s_ui - s_uj (preferred minus less preferred).

Each takes d [...] and returns the elementwise loss [...] (same shape): pure functions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def logistic(diff: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """log(1 + exp(-(d - margin))): the RankNet / BPR loss. diff [...] -> [...]."""
    return F.softplus(margin - diff)


def hinge(diff: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """max(0, margin - d): the WARP / ranking-SVM loss. diff [...] -> [...]."""
    return torch.relu(margin - diff)


def softmax(diff: torch.Tensor, weight: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log(1 + Σ_j w_j exp(-d_j / T)) per row: the softmax cross-entropy of the positive
    against its weighted negatives (sampled softmax; the full softmax with all-catalogue
    pairs). Unlike the elementwise losses it couples a positive's pairs: each pair's
    gradient is its share of the row's softmax, so the hardest negatives dominate and a
    row whose negatives all score far below stops contributing.
    diff [B, M], weight [B, M] (0 = no pair) -> [B]."""
    logits = torch.where(weight > 0, -diff / temperature + torch.log(weight.clamp_min(1e-30)),
                         torch.full_like(diff, float("-inf")))
    zero = torch.zeros_like(logits[:, :1])  # the positive's own term, exp(0) = 1
    return torch.logsumexp(torch.cat([zero, logits], 1), dim=1)


PAIR_LOSSES = {"logistic": logistic, "hinge": hinge}
LIST_LOSSES = {"softmax": softmax}


def get_pair_loss(name: str):
    try:
        return PAIR_LOSSES[name] if name in PAIR_LOSSES else LIST_LOSSES[name]
    except KeyError:
        raise ValueError(f"loss.pair_loss must be one of {sorted(PAIR_LOSSES) + sorted(LIST_LOSSES)}, "
                         f"got {name!r}") from None
