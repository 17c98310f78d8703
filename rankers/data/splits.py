"""Train/test splits of a de-duplicated log. Positives are rows with grade >= threshold.

Both splits return (train, test) frames; ``test`` keeps only positive rows, since the
evaluation ranks held-out positives. Nothing after a user's split point stays in train,
so no future information leaks into training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def leave_last_n(log: pd.DataFrame, threshold: float, n: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, hold out the last ``n`` positives (by timestamp) and everything after them.

    Users whose held-out part would leave no training row stay entirely in train.
    """
    if n < 1:
        raise ValueError(f"leave_last_n: n must be >= 1, got {n}")
    pos = log[log["grade"] >= threshold]
    # The timestamp of each user's n-th last positive is that user's cut point.
    nth = pos.sort_values("timestamp", kind="stable").groupby("user_id")["timestamp"].nth(-n)
    cut = pd.Series(nth.to_numpy(), index=pos.loc[nth.index, "user_id"].to_numpy()) if len(nth) else pd.Series(dtype=float)
    user_cut = log["user_id"].map(cut).to_numpy(np.float64, na_value=np.inf)
    is_test = log["timestamp"].to_numpy() >= user_cut
    # A user needs at least one training row to be held out from.
    has_train = pd.Series(~is_test).groupby(log["user_id"].to_numpy()).transform("any").to_numpy()
    is_test &= has_train
    train = log[~is_test]
    test = log[is_test & (log["grade"].to_numpy() >= threshold)]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def temporal(log: pd.DataFrame, threshold: float, cutoff: float | None = None,
             test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything before ``cutoff`` trains; positives at or after it are test.

    ``cutoff`` defaults to the timestamp quantile that leaves ``test_fraction`` of rows after it.
    Users first seen after the cutoff are cold-start test users.
    """
    ts = log["timestamp"].to_numpy()
    if cutoff is None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"temporal: test_fraction must be in (0, 1), got {test_fraction}")
        cutoff = float(np.quantile(ts, 1.0 - test_fraction))
    train = log[ts < cutoff]
    test = log[(ts >= cutoff) & (log["grade"].to_numpy() >= threshold)]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def split(log: pd.DataFrame, threshold: float, kind: str = "leave_last_n", **kw):
    """Dispatch on ``kind`` in {leave_last_n, temporal}."""
    if kind == "leave_last_n":
        return leave_last_n(log, threshold, **kw)
    if kind == "temporal":
        return temporal(log, threshold, **kw)
    raise ValueError(f"unknown split kind {kind!r}; use 'leave_last_n' or 'temporal'")
