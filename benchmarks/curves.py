"""Time to quality, scored alike for every model: validation NDCG@10 of a score matrix.

numpy only, so that the peers' process (benchmarks/peer_curves.py, run with the interpreter that
has LightFM) and ours (benchmarks/quality.py) import the same metric. The split travels between
them as one .npz: the training positives (what LightFM fits and what every ranking excludes) and
the validation positives (carved from ua.base: ua.test is never read for tuning).
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np


def save_split(path: str, n_users: int, n_items: int, train_user: np.ndarray, train_item: np.ndarray,
               val_user: np.ndarray, val_item: np.ndarray) -> None:
    """Write the split (temp file, then rename: a reader never sees half of it)."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".npz")
    os.close(fd)
    np.savez(tmp, n_users=n_users, n_items=n_items, train_user=train_user, train_item=train_item,
             val_user=val_user, val_item=val_item)
    os.replace(tmp, path)


def load_split(path: str) -> Dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def ndcg_at_k(scores: np.ndarray, split: Dict[str, np.ndarray], k: int = 10) -> float:
    """Mean NDCG@k (binary gains, log2 discount, ideal over min(#targets, k)) over the users with
    validation positives; each user's training positives are left out of the ranking.
    scores [n_users, n_items] (row u = user u)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[split["train_user"], split["train_item"]] = -np.inf
    users = np.unique(split["val_user"])
    s = s[users]
    target = np.zeros(s.shape, bool)
    target[np.searchsorted(users, split["val_user"]), split["val_item"]] = True
    top = np.argpartition(-s, k, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable"), 1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.take_along_axis(target, top, 1) * disc).sum(1)
    idcg = np.cumsum(disc)[np.minimum(target.sum(1), k) - 1]
    return float(np.mean(dcg / idcg))


def ease_scores(split: Dict[str, np.ndarray], lam: float = 500.0) -> np.ndarray:
    """EASE (Steck 2019): B = -P / diag(P), diag(B) = 0, P = (X'X + lam I)^-1; scores X B."""
    X = np.zeros((int(split["n_users"]), int(split["n_items"])), np.float64)
    X[split["train_user"], split["train_item"]] = 1.0
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    return X @ B


def mean_curve(runs: Sequence[List[Sequence[float]]]) -> List[tuple]:
    """Seeds' curves [(epoch, seconds, ndcg), ...] -> their mean at each epoch all of them reached."""
    n = min(len(r) for r in runs)
    return [(runs[0][i][0], float(np.mean([r[i][1] for r in runs])), float(np.mean([r[i][2] for r in runs])))
            for i in range(n)]


def seconds_to_reach(curve: Sequence[Sequence[float]], target: float) -> Optional[float]:
    """Training seconds at the first epoch whose NDCG is >= target (None: never)."""
    for _, sec, ndcg in curve:
        if ndcg >= target:
            return float(sec)
    return None
