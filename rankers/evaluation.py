"""Full-catalogue evaluation over the C++ core.

Scores are inner products of user and item vectors, with the item bias folded in as an
extra coordinate (query [u, 1], item [v, b]). For each batch of users the core returns
the pessimistic ranks of their targets (``rankers.scoring.rank_targets``) and their
top-k lists (``rankers.scoring.topk``); per-user metric values are summed, so results do
not depend on the batch size or the thread count.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np

from rankers import retrieval as scoring
from rankers.metrics import ranking


def augment_queries(user_vecs: np.ndarray) -> np.ndarray:
    """[U, d] -> [U, d+1] float32: a trailing 1 picks up the item bias."""
    u = np.asarray(user_vecs, np.float32)
    return np.concatenate([u, np.ones((len(u), 1), np.float32)], 1)


def augment_items(item_vecs: np.ndarray, item_bias: np.ndarray) -> np.ndarray:
    """[N, d], [N] -> [N, d+1] float32 with the bias as the last coordinate."""
    v = np.asarray(item_vecs, np.float32)
    return np.concatenate([v, np.asarray(item_bias, np.float32).reshape(-1, 1)], 1)


def augment_repeat(queries: np.ndarray, items: np.ndarray, member: np.ndarray, repeat: float):
    """Fold a per-(user, item) offset ``repeat * member`` into the inner product for a group
    of G users: query g gains ``repeat`` at coordinate g of G new ones, item j gains
    member[:, j]. queries [G, d], items [N, d], member [G, N] (0/1) -> ([G, d+G], [N, d+G])
    float32, with queries' @ items'.T = queries @ items.T + repeat * member."""
    g = len(queries)
    q = np.concatenate([np.asarray(queries, np.float32), np.float32(repeat) * np.eye(g, dtype=np.float32)], 1)
    it = np.concatenate([np.asarray(items, np.float32), np.asarray(member, np.float32).T], 1)
    return q, np.ascontiguousarray(it)


def augment(user_vecs: np.ndarray, item_vecs: np.ndarray, item_bias: np.ndarray | None):
    """Fold the item bias into the inner product: ([U, d+1], [N, d+1]) float32 (no bias: unchanged)."""
    if item_bias is None:
        return (np.ascontiguousarray(user_vecs, np.float32), np.ascontiguousarray(item_vecs, np.float32))
    return augment_queries(user_vecs), augment_items(item_vecs, item_bias)


class MetricAccumulator:
    """Collects per-user metric values over batches; ``result()`` gives means over users."""

    def __init__(self, n_items: int, ks: Sequence[int] = (10,)):
        self.n_items, self.ks = n_items, tuple(ks)
        self.values: Dict[str, List[float]] = {}
        self.recommended = np.zeros(n_items, bool)

    def add(self, queries: np.ndarray, items: np.ndarray, targets: List[np.ndarray],
            exclude: List[np.ndarray], num_threads: int | None = None) -> None:
        """queries [B, d] float32, items [N, d] float32; targets / exclude: B int arrays."""
        if len(targets) == 0:
            return
        rank_lists = scoring.rank_targets(queries, items, targets, exclude=exclude, num_threads=num_threads)
        ranks, n_pos = ranking.pad_ranks(rank_lists)
        n_cand = self.n_items - np.array([len(e) for e in exclude], np.int64)
        for name, vals in ranking.compute(ranks, n_pos, n_cand, self.ks).items():
            self.values.setdefault(name, []).extend(vals[np.isfinite(vals)].tolist())
        # Catalogue coverage of the top-k lists (a diversity check the rank metrics cannot see).
        k = min(max(self.ks), self.n_items)
        _, idx = scoring.topk(queries, items, k, exclude=exclude, num_threads=num_threads)
        self.recommended[idx[idx >= 0]] = True

    def result(self) -> Dict[str, float]:
        # fsum is exactly rounded, so the mean does not depend on how users were batched.
        out = {name: math.fsum(v) / max(len(v), 1) for name, v in sorted(self.values.items())}
        out[f"coverage@{max(self.ks)}"] = float(self.recommended.mean())
        out["users"] = float(len(self.values.get("mrr", [])))
        return out


def evaluate_vectors(user_vecs: np.ndarray, item_vecs: np.ndarray, item_bias: np.ndarray | None,
                     targets: List[np.ndarray], exclude: List[np.ndarray], ks: Sequence[int] = (10,),
                     batch_size: int = 1024, num_threads: int | None = None) -> Dict[str, float]:
    """Metrics of a factorised scorer. user_vecs [U, d] aligned with targets / exclude (U lists)."""
    q, items = augment(user_vecs, item_vecs, item_bias)
    acc = MetricAccumulator(len(items), ks)
    for s in range(0, len(q), batch_size):
        acc.add(q[s:s + batch_size], items, targets[s:s + batch_size], exclude[s:s + batch_size], num_threads)
    return acc.result()


def evaluate_popularity(popularity: np.ndarray, targets, exclude, ks=(10,), batch_size: int = 1024,
                        num_threads: int | None = None) -> Dict[str, float]:
    """The popularity baseline: every user gets the item's training positive count as score."""
    ones = np.ones((len(targets), 1), np.float32)
    return evaluate_vectors(ones, np.asarray(popularity, np.float32).reshape(-1, 1), None, targets, exclude,
                            ks, batch_size, num_threads)
