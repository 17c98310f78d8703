"""Train/test splits of a de-duplicated log. Positives are rows with grade >= threshold.

Both splits return (train, test) logs; ``test`` keeps only positive rows, since the
evaluation ranks held-out positives. Nothing after a user's split point stays in train,
so no future information leaks into training. Vectorised over the codes: no per-user loop.
"""
from __future__ import annotations

import numpy as np

from rankers.data.eventlog import EventLog


def leave_last_n(log: EventLog, threshold: float, n: int = 1) -> tuple[EventLog, EventLog]:
    """Per user, hold out the last ``n`` positives (by timestamp) and everything after them.

    Users whose held-out part would leave no training row stay entirely in train.
    """
    if n < 1:
        raise ValueError(f"leave_last_n: n must be >= 1, got {n}")
    n_users = len(log.user_ids)
    pos = log.grade >= threshold
    pu, pts = log.user[pos], log.timestamp[pos]
    order = np.lexsort((pts, pu))
    counts = np.bincount(pu, minlength=n_users)
    ends = np.cumsum(counts)
    # The timestamp of each user's n-th last positive is that user's cut point.
    cut = np.full(n_users, np.inf)
    has = counts >= n
    cut[has] = pts[order][ends[has] - n]
    is_test = log.timestamp >= cut[log.user]
    # A user needs at least one training row to be held out from.
    has_train = np.bincount(log.user[~is_test], minlength=n_users) > 0
    is_test &= has_train[log.user]
    return log.take(~is_test), log.take(is_test & pos)


def temporal(log: EventLog, threshold: float, cutoff: float | None = None,
             test_fraction: float = 0.2) -> tuple[EventLog, EventLog]:
    """Everything before ``cutoff`` trains; positives at or after it are test.

    ``cutoff`` defaults to the timestamp quantile that leaves ``test_fraction`` of rows after it.
    Users first seen after the cutoff are cold-start test users.
    """
    ts = log.timestamp
    if cutoff is None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"temporal: test_fraction must be in (0, 1), got {test_fraction}")
        cutoff = float(np.quantile(ts, 1.0 - test_fraction))
    return log.take(ts < cutoff), log.take((ts >= cutoff) & (log.grade >= threshold))


def split(log: EventLog, threshold: float, kind: str = "leave_last_n", **kw):
    """Dispatch on ``kind`` in {leave_last_n, temporal}."""
    if kind == "leave_last_n":
        return leave_last_n(log, threshold, **kw)
    if kind == "temporal":
        return temporal(log, threshold, **kw)
    raise ValueError(f"unknown split kind {kind!r}; use 'leave_last_n' or 'temporal'")
