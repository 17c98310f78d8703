"""Per-list ranking metrics for impression lists (``rankers.data.lists``): NDCG@k with graded
gains and Recall@k, vectorised over padded lists. Pure functions on numpy arrays.

Shapes: ``scores``, ``labels`` [R] (rows grouped by list), ``list_offsets`` int64 [L + 1].
Within a list, rows are ranked by score, best first; equal scores keep the rows' order (a
stable sort: deterministic, as LightGBM's evaluation is).
"""
from __future__ import annotations

import numpy as np


def padded(values: np.ndarray, list_offsets: np.ndarray, fill: float) -> np.ndarray:
    """Rows [R] as lists [L, M] (M: the longest list), ``fill`` after each list's end."""
    sizes = np.diff(list_offsets)
    out = np.full((len(sizes), int(sizes.max()) if len(sizes) else 0), fill, dtype=np.float64)
    pos = np.arange(len(values)) - np.repeat(list_offsets[:-1], sizes)
    out[np.repeat(np.arange(len(sizes)), sizes), pos] = values
    return out


def ranked_labels(scores: np.ndarray, labels: np.ndarray, list_offsets: np.ndarray) -> np.ndarray:
    """Each list's labels in ranked order [L, M] (-inf padding at the end)."""
    s = padded(scores, list_offsets, -np.inf)
    y = padded(labels, list_offsets, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")  # padding (-inf scores) sorts last
    return np.take_along_axis(y, order, 1)


def dcg(ranked: np.ndarray, k: int) -> np.ndarray:
    """DCG@k of ranked labels [L, M] (gains 2^label - 1, discount 1 / log2(position + 1)) -> [L]."""
    top = ranked[:, :k]
    gains = np.where(np.isfinite(top), np.exp2(np.where(np.isfinite(top), top, 0.0)) - 1.0, 0.0)
    return (gains / np.log2(np.arange(2, top.shape[1] + 2))[None, :]).sum(1)


def ndcg_at_k(scores: np.ndarray, labels: np.ndarray, list_offsets: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k per list [L]; a list with no relevant row (ideal DCG 0) counts 1, as LightGBM counts it."""
    ranked = ranked_labels(scores, labels, list_offsets)
    ideal = -np.sort(-np.where(np.isfinite(ranked), ranked, -np.inf), axis=1)
    best = dcg(ideal, k)
    return np.where(best > 0, dcg(ranked, k) / np.where(best > 0, best, 1.0), 1.0)


def recall_at_k(scores: np.ndarray, labels: np.ndarray, list_offsets: np.ndarray, k: int,
                threshold: float = 1.0) -> np.ndarray:
    """Share of a list's relevant rows (label >= threshold) in its top k, per list [L]; NaN for a
    list without a relevant row (average with nanmean)."""
    ranked = ranked_labels(scores, labels, list_offsets)
    rel = ranked >= threshold
    n = rel.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, rel[:, :k].sum(1) / n, np.nan)


def random_baseline(labels: np.ndarray, list_offsets: np.ndarray, metric, draws: int = 20, seed: int = 0,
                    **kw) -> float:
    """The mean of ``metric`` over lists for random orders (``draws`` seeded draws): the floor the
    paper reports its gains over."""
    rng = np.random.default_rng(seed)
    return float(np.mean([np.nanmean(metric(rng.random(len(labels)), labels, list_offsets, **kw))
                          for _ in range(draws)]))
