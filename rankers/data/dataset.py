"""From validated raw data to index space: the catalogue, encoders, splits, histories.

``prepare`` is the one place where ids become integer indices. It returns a
``RankingData`` that the datamodule, the evaluation and the export all read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import pandas as pd

from rankers.data.errors import DataError
from rankers.data.features import encode_entities, fit_vocabulary
from rankers.data.source import RawData
from rankers.data.splits import split as split_log
from rankers.model.tokenizer import Tokenizer, Vocabulary

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """Users to evaluate, their held-out positives, what to exclude, and their history.

    users: int64 [U_e] user indices; targets / exclude: U_e int64 arrays of item indices.
    """

    users: np.ndarray
    targets: List[np.ndarray]
    exclude: List[np.ndarray]


@dataclass
class Interactions:
    """Indexed training rows: user, item int64 [n]; grade, weight float32 [n]; timestamp float64 [n]."""

    user: np.ndarray
    item: np.ndarray
    grade: np.ndarray
    weight: np.ndarray
    timestamp: np.ndarray

    def __len__(self):
        return len(self.user)


def pad_history(users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int,
                max_len: int) -> np.ndarray:
    """Most recent ``max_len`` items per user as int64 [n_users, H], item index + 1, 0 = padding."""
    order = np.lexsort((-ts, users))  # by user, newest first
    u, it = users[order], items[order]
    starts = np.searchsorted(u, np.arange(n_users))
    rank = np.arange(len(u)) - starts[u]
    keep = rank < max_len
    width = max(1, int(rank[keep].max()) + 1) if keep.any() else 1
    hist = np.zeros((n_users, width), np.int64)
    hist[u[keep], rank[keep]] = it[keep] + 1
    return hist


@dataclass
class RankingData:
    """Everything the model, trainer, evaluation and export need, in index space.

    Attributes:
        item_ids: str [N] catalogue order; user_ids: str [U] (train users first, then
            test-only users, which get the OOV id token).
        user_vocab / item_vocab: vocabularies (fitted on the rows the model fits on).
        user_tokens, user_weights: [U, Tu]; item_tokens, item_weights: [N, Ti].
        train: the rows the model fits on (train minus validation).
        history_fit: [U, H] history from ``train`` (used in training and validation);
        history_full: [U, H] history from all training rows (used at test and export).
        val / test: evaluation sets; popularity: float32 [N] positive counts in all training rows
        (the popularity baseline); popularity_fit: the same over ``train`` (the model's prior).
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
    history_fit: np.ndarray
    history_full: np.ndarray
    val: Optional[EvalSet]
    test: EvalSet
    popularity: np.ndarray
    popularity_fit: np.ndarray
    positive_threshold: float
    max_grade: float
    n_train_users: int

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


def _positives_by_user(users: np.ndarray, items: np.ndarray, n_users: int) -> List[np.ndarray]:
    order = np.lexsort((items, users))
    u, it = users[order], items[order]
    bounds = np.searchsorted(u, np.arange(n_users + 1))
    return [np.unique(it[bounds[k]:bounds[k + 1]]) for k in range(n_users)]


def _eval_set(test: pd.DataFrame, uidx: dict, iidx: dict, exclude_by_user: List[np.ndarray]) -> EvalSet:
    tu = test["user_id"].map(uidx).to_numpy(np.int64)
    ti = test["item_id"].map(iidx).to_numpy(np.int64)
    users = np.unique(tu)
    targets_all = _positives_by_user(tu, ti, max(len(exclude_by_user), 1))
    targets, exclude, keep = [], [], []
    for u in users:
        t = np.setdiff1d(targets_all[u], exclude_by_user[u])  # a re-bought train positive is not a test target
        if len(t):
            keep.append(u)
            targets.append(t)
            exclude.append(exclude_by_user[u])
    return EvalSet(np.asarray(keep, np.int64), targets, exclude)


def prepare(raw: RawData, positive_threshold: float, split: dict | None, val_split: dict | None,
            max_history: int, history_min_grade: float | None) -> RankingData:
    """Index, split and encode ``raw``.

    Args:
        raw: validated data from a source.
        positive_threshold: rows with grade >= this are positives.
        split: kwargs of rankers.data.splits.split for train/test (unused, may be None, when
            raw.test_log is set).
        val_split: kwargs for carving validation out of train; None for no validation.
        max_history: most recent items kept in each user's history bag.
        history_min_grade: only events graded at least this enter the history bag (None = all).
    """
    if raw.test_log is not None:
        train_all, test = raw.log, raw.test_log
        test = test[test["grade"] >= positive_threshold]
    elif split is None:
        raise ValueError("data.split is required when the source has no test log of its own")
    else:
        train_all, test = split_log(raw.log, positive_threshold, **split)
    if len(train_all) == 0:
        raise DataError("the split leaves no training rows", source=raw.name)
    if len(test) == 0:
        raise DataError(f"the split leaves no test positives (grade >= {positive_threshold})", source=raw.name)
    if val_split:
        fit, val = split_log(train_all, positive_threshold, **val_split)
    else:
        fit, val = train_all, None

    # Catalogue: every item in the logs or the item table, in a stable order.
    item_set = set(raw.log["item_id"]) | set(test["item_id"])
    if raw.items is not None:
        item_set |= set(raw.items.index)
    item_ids = np.array(sorted(item_set, key=lambda s: (len(s), s)), dtype=object)
    iidx = {v: k for k, v in enumerate(item_ids)}
    train_users = sorted(set(train_all["user_id"]), key=lambda s: (len(s), s))
    cold_users = sorted(set(test["user_id"]) - set(train_users), key=lambda s: (len(s), s))
    user_ids = np.array(train_users + cold_users, dtype=object)
    uidx = {v: k for k, v in enumerate(user_ids)}

    if cold_users:
        known = set(raw.users.index) if raw.users is not None and raw.user_specs else set()
        unknown = [u for u in cold_users if u not in known]
        if unknown:
            rows = np.flatnonzero(test["user_id"].isin(unknown).to_numpy())
            raise DataError(f"test user {unknown[0]!r} has no training history and no features, so it "
                            f"cannot be scored ({len(unknown)} such users)", source=f"{raw.name} test",
                            column="user_id", row=int(rows[0]))
        log.info("%d test users are cold start (features only)", len(cold_users))
    n_cold_items = len(set(test["item_id"]) - set(train_all["item_id"]))
    if n_cold_items:
        log.info("%d test items never occur in training (scored from features)", n_cold_items)

    # Vocabularies come from the rows the model fits on, so validation sees real OOV.
    user_vocab = fit_vocabulary("user_id", fit["user_id"].unique(), raw.users, raw.user_specs)
    item_vocab = fit_vocabulary("item_id", fit["item_id"].unique(), raw.items, raw.item_specs)
    user_tokens, user_weights = encode_entities(Tokenizer(user_vocab), user_ids, raw.users)
    item_tokens, item_weights = encode_entities(Tokenizer(item_vocab), item_ids, raw.items)

    def index(df):
        return Interactions(df["user_id"].map(uidx).to_numpy(np.int64), df["item_id"].map(iidx).to_numpy(np.int64),
                            df["grade"].to_numpy(np.float32), df["weight"].to_numpy(np.float32),
                            df["timestamp"].to_numpy(np.float64))

    tr_fit, tr_all = index(fit), index(train_all)
    n_users = len(user_ids)
    def history(tr: Interactions) -> np.ndarray:
        keep = tr.grade >= history_min_grade if history_min_grade is not None else slice(None)
        return pad_history(tr.user[keep], tr.item[keep], tr.timestamp[keep], n_users, max_history)

    history_fit, history_full = history(tr_fit), history(tr_all)
    pos_fit = tr_fit.grade >= positive_threshold
    pos_all = tr_all.grade >= positive_threshold
    excl_fit = _positives_by_user(tr_fit.user[pos_fit], tr_fit.item[pos_fit], n_users)
    excl_all = _positives_by_user(tr_all.user[pos_all], tr_all.item[pos_all], n_users)
    val_set = _eval_set(val, uidx, iidx, excl_fit) if val is not None and len(val) else None
    test_set = _eval_set(test, uidx, iidx, excl_all)
    popularity = np.bincount(tr_all.item[pos_all], minlength=len(item_ids)).astype(np.float32)
    popularity_fit = np.bincount(tr_fit.item[pos_fit], minlength=len(item_ids)).astype(np.float32)
    if int(pos_fit.sum()) == 0:
        raise DataError(f"no training positives (grade >= {positive_threshold})", source=raw.name)
    return RankingData(
        name=raw.name, item_ids=item_ids, user_ids=user_ids, user_vocab=user_vocab, item_vocab=item_vocab,
        user_tokens=user_tokens, user_weights=user_weights, item_tokens=item_tokens, item_weights=item_weights,
        train=tr_fit, history_fit=history_fit, history_full=history_full, val=val_set, test=test_set,
        popularity=popularity, popularity_fit=popularity_fit, positive_threshold=float(positive_threshold), max_grade=float(raw.max_grade),
        n_train_users=len(train_users),
    )
