"""From validated raw data to index space: the catalogue, vocabularies, splits, histories.

``prepare`` is the one place where ids become integer indices. It returns a ``RankingData``
that the datamodule, the evaluation and the export all read. Everything is vectorised over
the log's codes, and per-user lists are CSR (``Ragged``), never dense users x anything.
"""
from __future__ import annotations

import logging
import dataclasses
import datetime as _dt
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from rankers.data.errors import DataError
from rankers.data.eventlog import EventLog
from rankers.data.features import encode_entities, fit_vocabulary
from rankers.data.ragged import Ragged, unique
from rankers.data.source import RawData
from rankers.data.splits import split as split_log
from rankers.model.tokenizer import Tokenizer, Vocabulary

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """Users to evaluate, their held-out positives, what to exclude from their ranking.

    users: int64 [U_e] user indices; targets / exclude: Ragged rows aligned with users (item indices).
    """

    users: np.ndarray
    targets: Ragged
    exclude: Ragged

    def sample(self, max_users: Optional[int], seed: int) -> "EvalSet":
        """A seeded sample of ``max_users`` users (in user order), or all with None or more."""
        if max_users is None or max_users >= len(self.users):
            return self
        if max_users < 1:
            raise ValueError(f"eval.max_users must be >= 1 or null, got {max_users}")
        rows = np.sort(np.random.default_rng(seed).choice(len(self.users), max_users, replace=False))
        return EvalSet(self.users[rows], self.targets.take(rows), self.exclude.take(rows))


@dataclass
class WarmStart:
    """What a warm start grows from (the previous model's): its vocabularies, whose tokens keep
    their numbers; its catalogue, whose items stay in the new one (an item not bought in the
    window is still sold); its known users and their histories (item index + 1 in its
    catalogue), which stay known: a user the window does not hold keeps the stored history,
    and one it holds gets the window's events first, then the older ones."""

    user_vocab: Vocabulary
    item_vocab: Vocabulary
    item_ids: np.ndarray
    user_ids: np.ndarray
    history: Ragged


def merge_histories(new: Ragged, old: Ragged, old_rows: np.ndarray, item_map: np.ndarray, max_len: int) -> Ragged:
    """Each row's newest items: ``new``'s row (newest first), then the items of ``old``'s row
    for it that it lacks, cut to ``max_len``.

    new: R rows of item index + 1; old: rows of another catalogue's item index + 1;
    old_rows int64 [len(old)]: the row of ``new`` each old row belongs to (-1: none);
    item_map int64 [old catalogue]: the new index of each old item.
    """
    n = len(new)
    nl, ol = new.lengths(), old.lengths()
    u = np.concatenate([np.repeat(np.arange(n), nl), np.repeat(old_rows, ol)])
    v = np.concatenate([new.values.astype(np.int64), item_map[old.values.astype(np.int64) - 1] + 1])
    rank = np.concatenate([np.arange(len(new.values)) - np.repeat(new.offsets[:-1], nl),
                           max_len + np.arange(len(old.values)) - np.repeat(old.offsets[:-1], ol)])
    keep = u >= 0
    u, v, rank = u[keep], v[keep], rank[keep]
    order = np.lexsort((rank, v, u))  # by user, item, then rank: the first of each (user, item) stays
    u, v, rank = u[order], v[order], rank[order]
    first = np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])]
    u, v, rank = u[first], v[first], rank[first]
    order = np.lexsort((rank, u))
    u, v = u[order], v[order]
    at = np.arange(len(u)) - np.searchsorted(u, u)  # position within the user's row
    keep = at < max_len
    return Ragged.group(u[keep], v[keep].astype(np.int32), n)


def time_bound(value, key: str) -> Optional[float]:
    """A window bound of ``data.since`` / ``data.until``: None, a number in the log's timestamp
    unit, or an ISO date or date-time (UTC unless it says otherwise) read as Unix seconds."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            t = _dt.datetime.fromisoformat(value)
        except ValueError:
            t = None
        if t is not None:
            return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).timestamp()
    raise ValueError(f"{key} must be a number (the log's timestamp unit) or an ISO date such as 2026-11-30 or "
                     f"2026-11-30T12:00:00Z, got {value!r}")


def time_window(since, until, keys: Tuple[str, str] = ("data.since", "data.until")) -> Tuple[Optional[float],
                                                                                           Optional[float]]:
    """``(since, until)`` read by ``time_bound``; since must be before until (``keys``: their
    names in errors)."""
    w = (time_bound(since, keys[0]), time_bound(until, keys[1]))
    if None not in w and w[0] >= w[1]:
        raise ValueError(f"{keys[0]} ({since}) must be before {keys[1]} ({until})")
    return w


@dataclass
class Interactions:
    """Indexed training rows: user, item int32 [n]; grade, weight float32 [n]; timestamp float64 [n]."""

    user: np.ndarray
    item: np.ndarray
    grade: np.ndarray
    weight: np.ndarray
    timestamp: np.ndarray

    def __len__(self):
        return len(self.user)

    def take(self, rows) -> "Interactions":
        return Interactions(self.user[rows], self.item[rows], self.grade[rows], self.weight[rows],
                            self.timestamp[rows])


def histories(tr: Interactions, n_users: int, max_len: int) -> Ragged:
    """Each user's most recent ``max_len`` items, newest first, as item index + 1 (int32)."""
    order = np.lexsort((-tr.timestamp, tr.user))  # by user, newest first
    u = tr.user[order]
    starts = np.searchsorted(u, np.arange(n_users))
    keep = (np.arange(len(u)) - starts[u]) < max_len
    return Ragged.group(u[keep], (tr.item[order][keep] + 1).astype(np.int32), n_users)


@dataclass
class RankingData:
    """Everything the model, trainer, evaluation and export need, in index space.

    Attributes:
        item_ids: str [N] catalogue order; user_ids: str [U] (train users first, then
            test-only users, which get the OOV id token).
        user_vocab / item_vocab: vocabularies (fitted on the rows the model fits on).
        user_tokens, user_weights: [U, Tu]; item_tokens, item_weights: [N, Ti].
        train: the rows the model fits on (train minus validation).
        history_fit: per-user history bags from ``train`` (training and validation);
        history_full: from all training rows (test and export). Ragged, item index + 1.
        val / test: evaluation sets; popularity: float32 [N] positive counts in all training rows
        (the popularity baseline); popularity_fit: the same over ``train`` (the model's prior).
        window: (first, last) timestamp of the events read (training and test): the events a
            later offline gate must not evaluate on.
    """

    name: str
    item_ids: np.ndarray
    user_ids: np.ndarray
    user_vocab: Vocabulary
    item_vocab: Vocabulary
    user_tokens: np.ndarray
    user_weights: np.ndarray
    item_tokens: np.ndarray
    item_weights: np.ndarray
    train: Interactions
    history_fit: Ragged
    history_full: Ragged
    val: Optional[EvalSet]
    test: EvalSet
    popularity: np.ndarray
    popularity_fit: np.ndarray
    positive_threshold: float
    max_grade: float
    n_train_users: int
    window: Tuple[float, float] = (float("nan"), float("nan"))

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def sizes(self) -> dict:
        """What a model is built from: vocabulary sizes, and the items' training positives
        (for the popularity prior)."""
        return {"n_user_tokens": self.user_vocab.n_tokens, "n_item_tokens": self.item_vocab.n_tokens,
                "n_items": self.n_items, "item_popularity": self.popularity_fit}


def catalogue_order(ids) -> np.ndarray:
    """Distinct ids in the catalogue's stable order: by length, then by string ("i2" before "i10")."""
    u = unique(np.asarray(ids, dtype=str))
    return u[np.lexsort((u, np.char.str_len(u)))].astype(object) if len(u) else u.astype(object)


def positions(ids: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Where each of ``ids`` stands in ``within`` -> int64 [n]; -1 for an id it does not hold
    (a code no row uses: a log's dictionary may name users a split left out)."""
    w = np.asarray(within, dtype=str)
    order = np.argsort(w)
    ids = np.asarray(ids, dtype=str)
    if len(w) == 0:
        return np.full(len(ids), -1, np.int64)
    p = np.minimum(np.searchsorted(w[order], ids), len(w) - 1)
    return np.where(w[order][p] == ids, order[p], -1)


def _eval_set(test: Interactions, exclude_by_user: Ragged, n_items: int) -> EvalSet:
    """The test positives per user minus that user's excluded items (a re-bought train positive
    is not a test target); users left without a target are dropped."""
    key = test.user.astype(np.int64) * n_items + test.item
    ex_user = np.repeat(np.arange(len(exclude_by_user)), exclude_by_user.lengths())
    ex_key = ex_user * n_items + exclude_by_user.values
    keep = ~np.isin(key, ex_key)
    key = unique(key[keep])
    users, tg = key // n_items, key % n_items
    kept = unique(users)
    rows = np.searchsorted(kept, users)
    return EvalSet(kept.astype(np.int64), Ragged.group(rows, tg.astype(np.int64), len(kept)),
                   exclude_by_user.take(kept))


def prepare(raw: RawData, positive_threshold: float, split: dict | None, val_split: dict | None,
            max_history: int, history_min_grade: float | None,
            window: Tuple[Optional[float], Optional[float]] = (None, None),
            warm: Optional[WarmStart] = None) -> RankingData:
    """Index, split and encode ``raw``.

    Args:
        raw: validated data from a source.
        positive_threshold: rows with grade >= this are positives.
        split: kwargs of rankers.data.splits.split for train/test (unused, may be None, when
            raw.test_log is set).
        val_split: kwargs for carving validation out of train; None for no validation.
        max_history: most recent items kept in each user's history bag.
        history_min_grade: only events graded at least this enter the history bag (None = all).
        window: (since, until): only the training log's events with since <= timestamp < until
            are read (None: unbounded); a source's own test log is read whole.
        warm: grow the previous model's vocabularies and catalogue instead of fitting new ones.
    """
    since, until = window
    if since is not None or until is not None:
        ts = raw.log.timestamp
        keep = (ts >= (-np.inf if since is None else since)) & (ts < (np.inf if until is None else until))
        if not keep.any():
            raise DataError(f"no event in the window data.since={since} .. data.until={until} (the log's "
                            f"timestamps run from {ts.min() if len(ts) else 'nothing'} to "
                            f"{ts.max() if len(ts) else 'nothing'})", source=raw.name)
        raw = dataclasses.replace(raw, log=raw.log.take(keep))
    if raw.test_log is not None:
        train_all, test = raw.log, raw.test_log
        test = test.take(test.grade >= positive_threshold)
    elif split is None:
        raise ValueError("data.split is required when the source has no test log of its own")
    else:
        train_all, test = split_log(raw.log, positive_threshold, **split)
    if len(train_all) == 0:
        raise DataError("the split leaves no training rows", source=raw.name)
    if len(test) == 0:
        raise DataError(f"the split leaves no test positives (grade >= {positive_threshold})", source=raw.name)
    fit, val = split_log(train_all, positive_threshold, **val_split) if val_split else (train_all, None)

    # Catalogue: every item in the logs or the item table, in a stable order.
    item_ids = catalogue_order(np.concatenate([train_all.items_of(), test.items_of()]
                                              + ([raw.items.index.to_numpy()] if raw.items is not None else [])
                                              + ([np.asarray(warm.item_ids, str)] if warm is not None else [])))
    train_users = catalogue_order(np.concatenate([np.asarray(train_all.users_of(), str)]
                                                 + ([np.asarray(warm.user_ids, str)] if warm is not None else [])))
    test_users = test.users_of()
    cold_users = catalogue_order(np.setdiff1d(np.asarray(test_users, str), np.asarray(train_users, str)))
    user_ids = np.concatenate([train_users, cold_users])

    if len(cold_users):
        known = raw.users.index if raw.users is not None and raw.user_specs else None
        unknown = cold_users if known is None else cold_users[~np.isin(np.asarray(cold_users, str),
                                                                        np.asarray(known, str))]
        if len(unknown):
            first = positions(unknown[:1], test.user_ids)[0]
            row = int(np.flatnonzero(test.user == first)[0])
            raise DataError(f"test user {unknown[0]!r} has no training history and no features, so it "
                            f"cannot be scored ({len(unknown)} such users)", source=f"{raw.name} test",
                            column="user_id", row=row)
        log.info("%d test users are cold start (features only)", len(cold_users))
    n_cold_items = len(np.setdiff1d(np.asarray(test.items_of(), str), np.asarray(train_all.items_of(), str)))
    if n_cold_items:
        log.info("%d test items never occur in training (scored from features)", n_cold_items)

    # Vocabularies come from the rows the model fits on, so validation sees real OOV.
    user_vocab = fit_vocabulary("user_id", fit.users_of(), raw.users, raw.user_specs,
                                base=warm.user_vocab if warm is not None else None)
    item_vocab = fit_vocabulary("item_id", fit.items_of(), raw.items, raw.item_specs,
                                base=warm.item_vocab if warm is not None else None)
    user_tokens, user_weights = encode_entities(Tokenizer(user_vocab), user_ids, raw.users)
    item_tokens, item_weights = encode_entities(Tokenizer(item_vocab), item_ids, raw.items)

    def index(g: EventLog) -> Interactions:
        return Interactions(positions(g.user_ids, user_ids).astype(np.int32)[g.user],
                            positions(g.item_ids, item_ids).astype(np.int32)[g.item], g.grade, g.weight, g.timestamp)

    tr_fit, tr_all = index(fit), index(train_all)
    n_users, n_items = len(user_ids), len(item_ids)

    # a warm start's users and items in this catalogue: found once, for both histories
    warm_rows = (positions(warm.user_ids, user_ids), positions(warm.item_ids, item_ids)) if warm is not None else None

    def history(tr: Interactions) -> Ragged:
        h = histories(tr if history_min_grade is None else tr.take(tr.grade >= history_min_grade),
                      n_users, max_history)
        return h if warm_rows is None else merge_histories(h, warm.history, *warm_rows, max_history)

    def positives_by_user(tr: Interactions) -> Ragged:
        pos = tr.take(tr.grade >= positive_threshold)
        key = unique(pos.user.astype(np.int64) * n_items + pos.item)  # sorted, distinct
        return Ragged.group(key // n_items, key % n_items, n_users)

    pos_fit, pos_all = tr_fit.grade >= positive_threshold, tr_all.grade >= positive_threshold
    if int(pos_fit.sum()) == 0:
        raise DataError(f"no training positives (grade >= {positive_threshold})", source=raw.name)
    val_set = _eval_set(index(val), positives_by_user(tr_fit), n_items) if val is not None and len(val) else None
    return RankingData(
        name=raw.name, item_ids=item_ids, user_ids=user_ids, user_vocab=user_vocab, item_vocab=item_vocab,
        user_tokens=user_tokens, user_weights=user_weights, item_tokens=item_tokens, item_weights=item_weights,
        train=tr_fit, history_fit=history(tr_fit), history_full=history(tr_all), val=val_set,
        test=_eval_set(index(test), positives_by_user(tr_all), n_items),
        popularity=np.bincount(tr_all.item[pos_all], minlength=n_items).astype(np.float32),
        popularity_fit=np.bincount(tr_fit.item[pos_fit], minlength=n_items).astype(np.float32),
        positive_threshold=float(positive_threshold), max_grade=float(raw.max_grade),
        n_train_users=len(train_users),
        window=(float(min(train_all.timestamp.min(), test.timestamp.min())),
                float(max(train_all.timestamp.max(), test.timestamp.max()))),
    )
