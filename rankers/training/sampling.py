"""Training pairs: each (user, positive item) against sampled less-preferred items.

Negatives come from three pools, with counts set in config:
- ``uniform``: items drawn uniformly from the catalogue;
- ``popular``: items drawn proportionally to their training popularity (hard negatives
  for a popularity-biased model, as in word2vec-style unigram sampling);
- ``own``: the user's own lower-graded events (viewed but not bought), grade > 0;
- ``shared``: items drawn once per batch and paired with every row of it (a few thousand
  negatives per positive for the cost of a few thousand item vectors per batch, where per-row
  draws cost one item vector per draw); uniformly, or with ``shared_popularity`` = a > 0 from
  the proposal q(i) ∝ (1 + training positives of i)^a, where a model's violators gather, with
  importance weights 1 / q on the columns, so WARP's rank estimate and the gradient stay those
  of uniform draws in expectation;
- ``catalogue``: every item in the catalogue (all pairs). Then the sampled counts are
  ignored and the batch carries the user's graded items instead, so the model scores the
  positive against the whole catalogue in one matrix product (cheap for catalogues up to
  ~10^4 items, and the strongest signal: no easy pair is skipped, no hard pair missed).
A sampled item that the user graded at or above the positive's grade is not a valid
negative: its pair gets mask 0. Unobserved items have grade 0.

Negatives are drawn per batch (``negatives(rows, rng)``), so an epoch's memory is its batch,
not positives x negatives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from rankers.data.dataset import Interactions


@dataclass(frozen=True)
class Negatives:
    """The pair set (``loss.negatives``; its defaults live in rankers/conf/loss/): per positive,
    counts of uniform, popular and own lower-graded negatives, a number of uniform negatives
    shared by the whole batch, or the whole catalogue; and how many of a user's positives share
    one training row (its user vector and its shared or catalogue scores)."""

    uniform: int
    popular: int
    own: int
    catalogue: bool
    shared: int
    positives_per_row: int
    shared_popularity: float = 0.0

    def __post_init__(self):
        if self.positives_per_row < 1:
            raise ValueError(f"loss.negatives.positives_per_row must be >= 1, got {self.positives_per_row}")
        if not self.shared_popularity >= 0:
            raise ValueError(f"loss.negatives.shared_popularity must be >= 0, got {self.shared_popularity}")
        counts = (self.uniform, self.popular, self.own, self.shared)
        if min(counts) < 0 or (sum(counts) == 0 and not self.catalogue):
            raise ValueError(f"loss.negatives: counts must be >= 0 with at least one > 0 (or catalogue=true), "
                             f"got uniform={self.uniform}, popular={self.popular}, own={self.own}, "
                             f"shared={self.shared}")


class PairSampler:
    """The training positives, and negatives for any batch of them, from indexed training rows.

    Positives: user, pos int64 [P]; pos_grade, weight float32 [P]; user_positives float32 [P]:
    the row's user's number of training positives (for the objective's per-user weighting).
    """

    def __init__(self, train: Interactions, n_items: int, positive_threshold: float, negatives: Negatives,
                 popularity_smoothing: float = 0.75):
        self.catalogue = negatives.catalogue
        self.per_row = negatives.positives_per_row
        self.n_items = n_items
        self.counts = (0, 0, 0) if self.catalogue else (negatives.uniform, negatives.popular, negatives.own)
        self.shared = 0 if self.catalogue else negatives.shared
        is_pos = train.grade >= positive_threshold
        self.user, self.pos = train.user[is_pos].astype(np.int64), train.item[is_pos].astype(np.int64)
        self.pos_grade, self.weight = train.grade[is_pos], train.weight[is_pos]
        self.user_positives = np.bincount(self.user)[self.user].astype(np.float32)  # one pair row per positive
        # Sorted (user, item) keys give vectorised grade look-ups for sampled items.
        keys = train.user.astype(np.int64) * n_items + train.item
        order = np.argsort(keys, kind="stable")
        self.keys, self.key_grade = keys[order], train.grade[order]
        self.key_start = np.searchsorted(self.keys // n_items, np.arange(int(train.user.max()) + 2)) \
            if len(keys) else np.zeros(1, np.int64)
        positives = np.bincount(train.item[is_pos], minlength=n_items).astype(np.float64)
        pop = positives ** popularity_smoothing + 1e-12
        self.pop_cdf = np.cumsum(pop) / pop.sum()
        # the shared negatives' proposal (None: uniform)
        self.shared_q = None
        if negatives.shared_popularity > 0 and self.shared:
            q = (1.0 + positives) ** negatives.shared_popularity
            self.shared_q = q / q.sum()
            self.shared_cdf = np.cumsum(self.shared_q)
        # Per-user rows sorted by grade, for drawing the user's own lower-graded items.
        order = np.lexsort((train.grade, train.user))
        self.own_item, self.own_grade = train.item[order].astype(np.int64), train.grade[order]
        u_sorted = train.user[order].astype(np.int64)
        n_users = int(train.user.max()) + 1 if len(train.user) else 0
        self.own_start = np.searchsorted(u_sorted, np.arange(n_users))
        # Rows of a user with grade < g are the first k of its block; one global sorted key
        # (user * stride + grade) finds k for every positive at once.
        self._stride = float(train.grade.max()) + 1.0 if len(train.grade) else 1.0
        self._own_key = self.own_grade + u_sorted * self._stride

    def __len__(self):
        return len(self.user)

    @property
    def n_rows(self) -> int:
        """Training rows of an epoch: per user, ceil(positives / positives_per_row)."""
        counts = np.bincount(self.user) if len(self.user) else np.zeros(0, np.int64)
        return int(((counts + self.per_row - 1) // self.per_row).sum())

    def epoch_rows(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """An epoch's training rows: (order int64 [P] of positive indices, starts int64 [n_rows + 1]);
        row r holds the positives order[starts[r]:starts[r + 1]], all of one user, at most
        ``positives_per_row`` of them, drawn at random from the user's positives; rows in random
        order. With one positive per row this is a permutation of the positives."""
        P = len(self.user)
        perm = rng.permutation(P)
        if self.per_row == 1:
            return perm, np.arange(P + 1)
        o = perm[np.argsort(self.user[perm], kind="stable")]  # by user, random inside
        u, idx = self.user[o], np.arange(P)
        first = np.r_[True, u[1:] != u[:-1]] if P else np.zeros(0, bool)
        run_start = np.maximum.accumulate(np.where(first, idx, 0)) if P else idx
        starts = np.flatnonzero((idx - run_start) % self.per_row == 0)
        lens = np.diff(np.r_[starts, P])
        shuffle = rng.permutation(len(starts))
        lens, starts = lens[shuffle], starts[shuffle]
        ends = np.cumsum(lens)
        at = np.repeat(starts - (ends - lens), lens) + idx
        return o[at], np.r_[0, ends]

    def grade_of(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Grade the user gave the item in training, 0 for unobserved. Shapes broadcast."""
        q = user * self.n_items + item
        at = np.clip(np.searchsorted(self.keys, q), 0, max(len(self.keys) - 1, 0))
        hit = self.keys[at] == q
        return np.where(hit, self.key_grade[at], 0.0).astype(np.float32)

    def seen(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The training items of each user in ``users`` [B] as COO: (row in batch, item, grade)."""
        starts, ends = self.key_start[users], self.key_start[users + 1]
        lens = ends - starts
        rows = np.repeat(np.arange(len(users)), lens)
        at = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        return rows, self.keys[at] % self.n_items, self.key_grade[at]

    def shared_negatives(self, users: np.ndarray, rng: np.random.Generator
                         ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], Optional[np.ndarray]]:
        """The batch's shared negatives: items int64 [S], distinct; those that the users of
        ``users`` [B] graded, as COO (row in [0, B) ascending, column in [0, S), grade > 0), from
        the users' graded items, never a lookup per pair nor a dense [B, S] grade matrix (most of
        it zeros, rebuilt at every batch); and the columns' importance weights float32 [S]
        (None for uniform draws): S draws with replacement from the proposal q, item i drawn
        c_i times weighs c_i / (S N q_i), so a weighted count over the columns estimates the
        catalogue's count / N."""
        weight = None
        if self.shared_q is None:
            items = np.unique(rng.integers(0, self.n_items, min(self.shared, self.n_items)))
        else:
            draws = np.minimum(np.searchsorted(self.shared_cdf, rng.random(self.shared)), self.n_items - 1)
            items, count = np.unique(draws, return_counts=True)
            weight = (count / (self.shared * self.n_items * self.shared_q[items])).astype(np.float32)
        r, i, g = self.seen(users)
        # the users' graded items among the shared ones, by binary search in the sorted draw
        # (an item -> column array would cost the catalogue's size at every batch)
        at = np.minimum(np.searchsorted(items, i), max(len(items) - 1, 0))
        hit = (items[at] == i) & (g > 0) if len(items) else np.zeros(len(i), bool)
        return items, (r[hit], at[hit], g[hit].astype(np.float32)), weight

    def negatives(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Negatives of the positives ``rows`` [B]: (items int64 [B, M], grades float32 [B, M],
        mask float32 [B, M]: 1 where the user graded the item below the positive). M = 0 with
        catalogue negatives."""
        B = len(rows)
        user, pos_grade = self.user[rows], self.pos_grade[rows]
        n_uni, n_pop, n_own = self.counts
        parts = []
        if n_uni:
            parts.append(rng.integers(0, self.n_items, (B, n_uni)))
        if n_pop:
            parts.append(np.minimum(np.searchsorted(self.pop_cdf, rng.random((B, n_pop))), self.n_items - 1))
        neg = np.concatenate(parts, axis=1) if parts else np.zeros((B, 0), np.int64)
        neg_grade = self.grade_of(user[:, None], neg)
        if n_own:
            # Count of the user's rows graded below the positive = how many own negatives exist.
            start = self.own_start[user]
            n_below = np.searchsorted(self._own_key, pos_grade + user * self._stride, side="left") - start
            r = (rng.random((B, n_own)) * np.maximum(n_below, 1)[:, None]).astype(np.int64)
            at = np.minimum(start[:, None] + r, len(self.own_item) - 1)
            own, own_grade = self.own_item[at], self.own_grade[at]
            has = (n_below > 0)[:, None]
            # Users with nothing lower-graded fall back to uniform draws for these slots.
            fallback = rng.integers(0, self.n_items, (B, n_own))
            own = np.where(has, own, fallback)
            own_grade = np.where(has, own_grade, self.grade_of(user[:, None], fallback))
            neg = np.concatenate([neg, own], axis=1)
            neg_grade = np.concatenate([neg_grade, own_grade.astype(np.float32)], axis=1)
        mask = (neg_grade < pos_grade[:, None]).astype(np.float32)
        return neg.astype(np.int64), neg_grade.astype(np.float32), mask
