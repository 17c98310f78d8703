"""Scoring a candidate list with the sparse linear model (the C++ core's ``linear_scores``) against
LightGBM's predict on the same candidates, in one run.

    python benchmarks/linear_scoring.py --data ../shared/data/lambdarank [--candidates 500] [--rounds 7]

Candidates: ``--candidates`` rows drawn from rank.test (300 sparse features). The linear model at
each sparsity: the ElasticRank weights trained on rank.train (RDA, 20 passes) with all but the k
largest set to 0; a sparse model needs only its k features per candidate, so its rows hold only
those (what a service would fetch and compute). LightGBM: LGBMRanker (lambdarank, 300 trees,
31 leaves) trained on rank.train, ``predict`` on the candidates as a dense matrix, one thread and
its default. Rounds alternate the calls; each figure is the median over rounds of the mean of
``--calls`` calls. Prints candidates scored per second and the ratio to LightGBM's.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from rankers.data.lists import ListData, read_letor
from rankers.model.linear import SparseLinear
from rankers.retrieval.core import linear_scores
from rankers.training.listwise import fit
from rankers.training.proximal import RDA


def restrict(data: ListData, rows: np.ndarray, keep: np.ndarray):
    """CSR of ``rows`` holding only the features in ``keep`` (bool [F])."""
    lo, hi = data.feat_offsets[rows], data.feat_offsets[rows + 1]
    n = hi - lo
    at = np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(int(n.sum()))
    idx, val = data.feat_index[at], data.feat_value[at]
    row = np.repeat(np.arange(len(rows)), n)
    k = keep[idx]
    return (np.r_[0, np.cumsum(np.bincount(row[k], minlength=len(rows)))].astype(np.int64),
            np.ascontiguousarray(idx[k]), np.ascontiguousarray(val[k]))


def per_call(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main(data_dir: Path, candidates: int, rounds: int, calls: int) -> None:
    import lightgbm as lgb
    from sklearn.datasets import load_svmlight_file

    train = read_letor(data_dir / "rank.train", data_dir / "rank.train.query")
    test = read_letor(data_dir / "rank.test", data_dir / "rank.test.query", n_features=train.n_features)
    torch.manual_seed(0)
    m = SparseLinear(train.n_features)
    fit(m, train.scaled_within_lists(), RDA(m.parameters(), gamma=10.0), passes=20, k=5)
    w = m.weight.detach().numpy()
    rows = np.random.default_rng(0).integers(0, test.n_rows, candidates)

    Xtr, ytr = load_svmlight_file(str(data_dir / "rank.train"))
    gtr = np.loadtxt(str(data_dir / "rank.train.query"), dtype=int)
    ranker = lgb.LGBMRanker(objective="lambdarank", n_estimators=300, learning_rate=0.05, num_leaves=31,
                            verbose=-1).fit(Xtr, ytr, group=gtr)
    Xte, _ = load_svmlight_file(str(data_dir / "rank.test"), n_features=Xtr.shape[1])
    X = np.ascontiguousarray(Xte[rows].toarray())
    booster = ranker.booster_

    order = np.argsort(-np.abs(w))
    settings = {}
    for k in sorted({min(k, int((w != 0).sum())) for k in (1, 4, 16, 64, 256, 1024)}):
        keep = np.zeros(len(w), bool)
        keep[order[:k]] = True
        wk = np.where(keep, w, 0.0).astype(np.float32)
        off, idx, val = restrict(test, rows, keep)
        settings[f"linear, {k} non-zeros"] = (lambda off=off, idx=idx, val=val, wk=wk: linear_scores(off, idx, val, wk),
                                              int(len(idx)))
    settings["LightGBM, 1 thread"] = (lambda: booster.predict(X, num_threads=1), None)
    settings["LightGBM, default threads"] = (lambda: booster.predict(X), None)
    times = {name: [] for name in settings}
    for _ in range(rounds):
        for name, (fn, _) in settings.items():
            fn()  # warm
            times[name].append(per_call(fn, calls))
    base = float(np.median(times["LightGBM, 1 thread"]))
    print(f"{'scorer':28s} {'stored features':>15s} {'us per list':>12s} {'candidates/s':>14s} {'vs LightGBM 1 thr':>18s}"
          f"   ({candidates} candidates, median of {rounds} rounds x {calls} calls)")
    for name, (fn, nnz) in settings.items():
        t = float(np.median(times[name]))
        print(f"{name:28s} {'' if nnz is None else nnz:>15} {t * 1e6:12.1f} {candidates / t:14.0f} {base / t:17.1f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--candidates", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(1)
    main(a.data, a.candidates, a.rounds, a.calls)
