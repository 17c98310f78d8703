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


PAIR_LOSSES = {"logistic": logistic, "hinge": hinge}


def get_pair_loss(name: str):
    try:
        return PAIR_LOSSES[name]
    except KeyError:
        raise ValueError(f"loss.pair_loss must be one of {sorted(PAIR_LOSSES)}, got {name!r}") from None
