"""Ranking metrics from the pessimistic ranks of each user's held-out positives.

Every function takes, per user, the 1-based ranks of that user's targets among the
items eligible for ranking (the catalogue minus the user's excluded train positives),
under the pessimistic order: score descending, and among equal scores every non-target
before any target. So a constant scorer puts all targets last and scores zero.

Shapes: ``ranks`` float64 [U, P], padded with 0 where a user has fewer than P targets;
``n_pos`` int [U] targets per user; ``n_cand`` int [U] eligible items per user.
Each function returns per-user values [U]; averaging over users is the caller's.
"""
from __future__ import annotations

import numpy as np


def _sorted(ranks: np.ndarray) -> np.ndarray:
    """Ranks ascending per row with padding (0) moved to the end as +inf."""
    r = np.where(ranks > 0, ranks.astype(np.float64), np.inf)
    return np.sort(r, axis=1)


def hits_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Targets within the top k. [U, P] -> [U]."""
    return ((ranks > 0) & (ranks <= k)).sum(1).astype(np.float64)


def precision_at_k(ranks: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    """hits / k. -> [U]."""
    return hits_at_k(ranks, k) / k


def recall_at_k(ranks: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    """hits / number of targets. -> [U]."""
    return hits_at_k(ranks, k) / np.maximum(n_pos, 1)


def ndcg_at_k(ranks: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    """Binary-gain NDCG@k with log2 discount; ideal DCG over min(n_pos, k) targets. -> [U]."""
    r = np.where((ranks > 0) & (ranks <= k), ranks, np.inf)
    dcg = (1.0 / np.log2(r + 1.0)).sum(1)
    disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = disc[np.minimum(n_pos, k)]
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


def map_at_k(ranks: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    """Average precision at k: Σ over targets in the top k of precision at their rank,
    divided by min(n_pos, k). -> [U]."""
    r = _sorted(ranks)
    prec = np.arange(1, r.shape[1] + 1)[None, :] / r
    ap = np.where(r <= k, prec, 0.0).sum(1)
    return ap / np.maximum(np.minimum(n_pos, k), 1)


def mrr(ranks: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """1 / rank of the best-ranked target. -> [U]."""
    return 1.0 / _sorted(ranks)[:, 0]


def auc(ranks: np.ndarray, n_pos: np.ndarray, n_cand: np.ndarray) -> np.ndarray:
    """Share of (target, eligible non-target) pairs ordered correctly; ties count as wrong
    (pessimistic). Users with no non-target get NaN. -> [U]."""
    r = _sorted(ranks)
    j = np.arange(r.shape[1])[None, :]
    n_neg = (n_cand - n_pos).astype(np.float64)[:, None]
    above = r - 1 - j  # non-targets ranked above each target
    valid = np.isfinite(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(valid, (n_neg - above) / n_neg, 0.0).sum(1) / np.maximum(n_pos, 1)
    return np.where(n_neg[:, 0] > 0, per, np.nan)


AT_K = {"precision": precision_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k, "map": map_at_k}


def names(ks) -> list[str]:
    """The names ``compute`` gives its metrics, in its order."""
    return [f"{m}@{k}" for k in ks for m in AT_K] + ["mrr", "auc"]


def compute(ranks: np.ndarray, n_pos: np.ndarray, n_cand: np.ndarray, ks=(10,)) -> dict[str, np.ndarray]:
    """All metrics as name -> per-user values [U]: precision@k, recall@k, ndcg@k, map@k, mrr, auc."""
    out = {}
    for k in ks:
        for m, fn in AT_K.items():
            out[f"{m}@{k}"] = fn(ranks, n_pos, k)
    out["mrr"] = mrr(ranks, n_pos)
    out["auc"] = auc(ranks, n_pos, n_cand)
    return out


def pad_ranks(rank_lists) -> tuple[np.ndarray, np.ndarray]:
    """List of U int arrays -> (ranks float64 [U, P] zero-padded, n_pos int64 [U])."""
    n_pos = np.array([len(r) for r in rank_lists], np.int64)
    out = np.zeros((len(rank_lists), max(1, int(n_pos.max()) if len(n_pos) else 1)))
    for u, r in enumerate(rank_lists):
        out[u, : len(r)] = r
    return out, n_pos
