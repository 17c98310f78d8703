"""Full-catalogue evaluation over the C++ core.

The model's score splits as ``rankers.model.score`` defines it: a dense part, one inner
product of queries and items (``Scorer.dense_queries`` / ``dense_items``: the item bias an
extra coordinate), and per-user sparse score offsets (the repeat term), which the core adds
by index. For each batch of users the core returns the pessimistic ranks of their
targets (``rankers.retrieval.rank_targets``) and their top-k lists (``topk``); per-user
metric values are summed, so results do not depend on the batch size or the thread count.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from rankers import retrieval
from rankers.metrics import ranking

Offsets = Optional[Tuple[np.ndarray, np.ndarray]]  # (item ids [B, H], values [B, H]); 0 = no term


class MetricAccumulator:
    """Collects per-user metric values over batches; ``result()`` gives means over users."""

    def __init__(self, n_items: int, ks: Sequence[int]):
        self.n_items, self.ks = n_items, tuple(ks)
        self.values: Dict[str, List[float]] = {}
        self.recommended = np.zeros(n_items, bool)

    def add(self, queries: np.ndarray, items: np.ndarray, targets: List[np.ndarray],
            exclude: List[np.ndarray], num_threads: int | None = None, offsets: Offsets = None) -> None:
        """queries [B, d] float32, items [N, d] float32; targets / exclude: B int arrays;
        offsets: the users' sparse score terms (see ``rankers.retrieval.topk``)."""
        if len(targets) == 0:
            return
        rank_lists = retrieval.rank_targets(queries, items, targets, exclude=exclude, num_threads=num_threads,
                                            offsets=offsets)
        ranks, n_pos = ranking.pad_ranks(rank_lists)
        n_cand = self.n_items - np.array([len(e) for e in exclude], np.int64)
        for name, vals in ranking.compute(ranks, n_pos, n_cand, self.ks).items():
            self.values.setdefault(name, []).extend(vals[np.isfinite(vals)].tolist())
        # Catalogue coverage of the top-k lists (a diversity check the rank metrics cannot see).
        k = min(max(self.ks), self.n_items)
        _, idx = retrieval.topk(queries, items, k, exclude=exclude, num_threads=num_threads, offsets=offsets)
        self.recommended[idx[idx >= 0]] = True

    def merge(self, others: Sequence["MetricAccumulator"]) -> None:
        """Adds the users of other accumulators (DDP ranks' shares of one evaluation)."""
        for o in others:
            for name, v in o.values.items():
                self.values.setdefault(name, []).extend(v)
            self.recommended |= o.recommended

    def result(self) -> Dict[str, float]:
        # fsum is exactly rounded, so the mean does not depend on how users were batched.
        out = {name: math.fsum(v) / max(len(v), 1) for name, v in sorted(self.values.items())}
        out[f"coverage@{max(self.ks)}"] = float(self.recommended.mean())
        out["users"] = float(len(self.values.get("mrr", [])))
        return out

    def standard_errors(self) -> Dict[str, float]:
        """The standard error of each per-user mean, sd / sqrt(users): how far a metric on a
        sample of users may stand from its value on all of them (coverage has none)."""
        out = {}
        for name, v in sorted(self.values.items()):
            n = len(v)
            out[name] = float(np.std(v, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return out


def metric_names(ks: Sequence[int]) -> List[str]:
    """The metrics an evaluation with cut-offs ``ks`` reports (``ranking.compute``'s, then coverage)."""
    return ranking.names(ks) + [f"coverage@{max(ks)}"]


def evaluate_popularity(popularity: np.ndarray, targets, exclude, ks: Sequence[int], batch_size: int,
                        num_threads: int | None = None) -> MetricAccumulator:
    """The popularity baseline: every user gets the item's training positive count as score.
    targets / exclude: per user item arrays (lists, or ``Ragged`` rows). Returns the
    accumulator: ``result()`` and ``standard_errors()``."""
    items = np.asarray(popularity, np.float32).reshape(-1, 1)
    acc = MetricAccumulator(len(items), ks)
    ones = np.ones((batch_size, 1), np.float32)
    rows = lambda x, sl: x.lists(sl) if hasattr(x, "lists") else x[sl]  # noqa: E731
    for s in range(0, len(targets), batch_size):
        t = rows(targets, slice(s, s + batch_size))
        acc.add(ones[:len(t)], items, t, rows(exclude, slice(s, s + batch_size)), num_threads)
    return acc
