"""An interaction log with ids as integer codes: what every source hands to the pipeline.

Millions of rows of string ids would cost ~100 bytes a row as Python objects; here a row is
28 bytes (two int32 codes, a float32 grade and weight, a float64 timestamp) and each id
string exists once, in a sorted dictionary. Sorted dictionaries make code order equal string
order, so every ordering below is the ordering of the ids themselves: results never depend
on how a source numbered its ids or ordered its rows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from rankers.data.ragged import unique

CODE = np.int32  # code dtype: up to 2^31 distinct users or items


def dictionary(values) -> tuple[np.ndarray, np.ndarray]:
    """(codes int32 [n] into uniques, uniques: sorted unique strings as an object array)."""
    uniques, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return codes.astype(CODE).reshape(-1), uniques.astype(object)


def recode(codes: np.ndarray, ids: np.ndarray, into: np.ndarray) -> np.ndarray:
    """Codes into ``ids`` as codes into ``into`` (sorted, a superset of the ids used) [n] int32."""
    where = np.searchsorted(np.asarray(into, dtype=str), np.asarray(ids, dtype=str))
    return where.astype(CODE)[codes]


@dataclass
class EventLog:
    """Events as codes. user, item: int32 [E] codes into user_ids / item_ids (sorted, unique
    str object arrays); grade, weight: float32 [E]; timestamp: float64 [E]."""

    user: np.ndarray
    item: np.ndarray
    grade: np.ndarray
    timestamp: np.ndarray
    weight: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> "EventLog":
        """From a validated frame (``rankers.data.log.validate_log``: str ids, grade, timestamp, weight)."""
        user, user_ids = dictionary(df["user_id"].to_numpy())
        item, item_ids = dictionary(df["item_id"].to_numpy())
        return cls(user, item, df["grade"].to_numpy(np.float32), df["timestamp"].to_numpy(np.float64),
                   df["weight"].to_numpy(np.float32), user_ids, item_ids)

    @classmethod
    def concat(cls, logs: Sequence["EventLog"]) -> "EventLog":
        """One log from several (their dictionaries merged)."""
        logs = [g for g in logs if len(g)] or list(logs[:1])
        user_ids = unique(np.concatenate([np.asarray(g.user_ids, dtype=str) for g in logs])).astype(object)
        item_ids = unique(np.concatenate([np.asarray(g.item_ids, dtype=str) for g in logs])).astype(object)
        cat = lambda name: np.concatenate([getattr(g, name) for g in logs])  # noqa: E731
        return cls(np.concatenate([recode(g.user, g.user_ids, user_ids) for g in logs]),
                   np.concatenate([recode(g.item, g.item_ids, item_ids) for g in logs]),
                   cat("grade"), cat("timestamp"), cat("weight"), user_ids, item_ids)

    def take(self, rows) -> "EventLog":
        """The rows ``rows`` (a boolean mask or indices), same dictionaries."""
        return replace(self, user=self.user[rows], item=self.item[rows], grade=self.grade[rows],
                       timestamp=self.timestamp[rows], weight=self.weight[rows])

    def users_of(self) -> np.ndarray:
        """The ids of the users that have events here (sorted, unique)."""
        return self.user_ids[unique(self.user)]

    def items_of(self) -> np.ndarray:
        """The ids of the items that have events here (sorted, unique)."""
        return self.item_ids[unique(self.item)]

    def deduplicate(self) -> "EventLog":
        """One row per (user, item): the highest grade, the latest among equal grades (its weight
        is that row's). Sorted by (timestamp, user id, item id), so that what follows does not
        depend on the input's row order."""
        if len(self) == 0:
            return self
        # last in (user, item, grade, timestamp, earlier row) order = highest grade, then latest,
        # then the first such row of the input
        order = np.lexsort((-np.arange(len(self)), self.timestamp, self.grade, self.item, self.user))
        u, i = self.user[order], self.item[order]
        last = np.ones(len(order), bool)
        last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
        kept = order[last]
        kept = kept[np.lexsort((self.item[kept], self.user[kept], self.timestamp[kept]))]
        return self.take(kept)
