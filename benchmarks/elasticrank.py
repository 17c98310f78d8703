"""The paper's ElasticRank on LightGBM's public lambdarank example, beside LightGBM, a linear
RankSVM and random order, in one run.

    python benchmarks/elasticrank.py --data ../shared/data/lambdarank [--seeds 5] [--passes 20]

Data: rank.train (201 lists) and rank.test (50 lists) with their .query files; features min-max
scaled within each list (the paper's scaling; the peers get the raw values, as LightGBM's example
does). ElasticRank: the sparse linear model, the Δ-weighted pairwise logistic loss within lists,
an elastic-net optimiser, ``--passes`` passes of one list per step (201 lists are far too few for
one pass). Its settings (optimiser, Δ scheme, step size) are chosen by 5-fold cross-validation on
the training lists only, then trained on all of them with ``--seeds`` list orders and scored on the
test lists. The sparse model: the same settings with the smallest λ1 of a grid whose model,
trained on the training lists, keeps at most 10% of the features non-zero, and that model's
support refitted without λ1 (the relaxed elastic net: λ1 picks the features, a refit undoes its
shrinkage). Peers (when installed; they are benchmark-only): LightGBM LGBMRanker
(lambdarank, 300 trees, lr 0.05, 31 leaves, subsample and colsample 0.8, ``--seeds`` seeds) and a
linear RankSVM (scikit-learn LinearSVC, C = 0.01, on the pairwise differences of each list).
NDCG@k: gains 2^label - 1, a list without a relevant row counts 1 (LightGBM's convention).
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from rankers.data.lists import ListData, read_letor
from rankers.metrics.lists import ndcg_at_k, random_baseline
from rankers.model.linear import SparseLinear
from rankers.training.listwise import fit, predict
from rankers.training.proximal import OPTIMIZERS

KS = (1, 3, 5, 10)
STEP = {"fobos": "lr", "rda": "gamma", "psgd": "lr", "tgd": "lr"}
GRID = {"optimizer": ["fobos", "rda"], "delta": ["ndcg", "recall"], "step": {"lr": [0.2, 0.5, 1.0],
                                                                             "gamma": [2.0, 5.0, 10.0]}}


def ndcgs(scores: np.ndarray, data: ListData) -> Dict[int, float]:
    return {k: float(np.mean(ndcg_at_k(scores, data.labels, data.list_offsets, k))) for k in KS}


def train_elasticrank(data: ListData, optimizer: str, step: float, delta: str, l1: float, passes: int,
                      seed: int) -> SparseLinear:
    torch.manual_seed(seed)
    model = SparseLinear(data.n_features)
    opt = OPTIMIZERS[optimizer](model.parameters(), **{STEP[optimizer]: step, "l1": l1})
    fit(model, data, opt, passes=passes, k=5, delta=delta, seed=seed)
    return model


def cross_validate(data: ListData, cfg: dict, passes: int, folds: int = 5) -> float:
    """Mean validation NDCG@5 over ``folds`` folds of the lists."""
    order = np.random.default_rng(0).permutation(data.n_lists)
    out = []
    for f in range(folds):
        val = order[f::folds]
        fit_lists = np.setdiff1d(order, val)
        m = train_elasticrank(data.take_lists(fit_lists), passes=passes, seed=0, **cfg)
        v = data.take_lists(val)
        out.append(ndcgs(predict(m, v), v)[5])
    return float(np.mean(out))


def lightgbm_runs(train_path: Path, test_path: Path, seeds: int) -> List[Dict[int, float]]:
    import lightgbm as lgb
    from sklearn.datasets import load_svmlight_file

    Xtr, ytr = load_svmlight_file(str(train_path))
    Xte, yte = load_svmlight_file(str(test_path), n_features=Xtr.shape[1])
    gtr = np.loadtxt(str(train_path) + ".query", dtype=int)
    gte = np.loadtxt(str(test_path) + ".query", dtype=int)
    offsets = np.r_[0, np.cumsum(gte)]
    out = []
    for s in range(seeds):
        m = lgb.LGBMRanker(objective="lambdarank", n_estimators=300, learning_rate=0.05, num_leaves=31,
                           subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=s, verbose=-1)
        m.fit(Xtr, ytr, group=gtr)
        out.append({k: float(np.mean(ndcg_at_k(m.predict(Xte), yte, offsets, k))) for k in KS})
    return out


def ranksvm(train: ListData, test: ListData) -> Dict[int, float]:
    """LinearSVC on x_i - x_j for every pair of a training list with y_i != y_j."""
    from scipy.sparse import csr_matrix
    from sklearn.svm import LinearSVC

    X = csr_matrix((train.feat_value, train.feat_index, train.feat_offsets), shape=(train.n_rows, train.n_features))
    X = X.toarray()
    rows_a, rows_b = [], []
    for lo, hi in zip(train.list_offsets[:-1], train.list_offsets[1:]):  # 201 small lists: a bench-only peer
        i, j = np.triu_indices(hi - lo, 1)
        keep = train.labels[lo + i] != train.labels[lo + j]
        rows_a.append(lo + i[keep])
        rows_b.append(lo + j[keep])
    a, b = np.concatenate(rows_a), np.concatenate(rows_b)
    diff, sign = X[a] - X[b], np.sign(train.labels[a] - train.labels[b])
    flip = np.arange(len(sign)) % 2 == 1  # both classes present
    diff[flip], sign[flip] = -diff[flip], -sign[flip]
    svm = LinearSVC(C=0.01, fit_intercept=False, max_iter=20000).fit(diff, sign)
    Xt = csr_matrix((test.feat_value, test.feat_index, test.feat_offsets), shape=(test.n_rows, train.n_features))
    return ndcgs(Xt @ svm.coef_.ravel(), test)


def main(data_dir: Path, seeds: int, passes: int) -> None:
    torch.set_num_threads(1)
    tr_path, te_path = data_dir / "rank.train", data_dir / "rank.test"
    train_raw = read_letor(tr_path, str(tr_path) + ".query")
    test_raw = read_letor(te_path, str(te_path) + ".query", n_features=train_raw.n_features)
    train, test = train_raw.scaled_within_lists(), test_raw.scaled_within_lists()
    print(f"train: {train.n_lists} lists ({train.skipped} single-candidate skipped), {train.n_rows} rows; "
          f"test: {test.n_lists} lists, {test.n_rows} rows; {train.n_features} features", flush=True)

    t0 = time.perf_counter()
    grid = [dict(optimizer=o, delta=d, step=s, l1=0.0) for o, d in itertools.product(GRID["optimizer"], GRID["delta"])
            for s in GRID["step"][STEP[o]]]
    cv = [(cross_validate(train, g, passes), g) for g in grid]
    best_cv, best = max(cv, key=lambda x: x[0])
    print(f"5-fold CV on the training lists, {len(grid)} settings, {time.perf_counter() - t0:.0f} s: best "
          f"{best} (validation NDCG@5 {best_cv:.4f})", flush=True)

    def runs(cfg: dict):
        ms = [train_elasticrank(train, passes=passes, seed=s, **cfg) for s in range(seeds)]
        return [ndcgs(predict(m, test), test) for m in ms], [m.nonzeros() for m in ms]

    dense, dense_nz = runs(best)
    # the sparse model: the smallest λ1 of a grid whose models keep <= 10% of the features (on the training lists)
    budget = int(0.1 * train.n_features)
    grid_l1 = np.logspace(-4, 1, 51)  # in the optimiser's units (RDA's: the average gradient's)
    l1 = next((float(l1) for l1 in grid_l1
               if train_elasticrank(train, passes=passes, seed=0, **{**best, "l1": float(l1)}).nonzeros() <= budget),
              None)
    if l1 is None:
        raise SystemExit(f"no l1 up to {grid_l1[-1]:g} leaves <= {budget} non-zero features")
    sparse, sparse_nz = runs({**best, "l1": l1})
    # the relaxed elastic net: the l1 model's support (seed 0), refitted without l1 on those features alone
    support = train_elasticrank(train, passes=passes, seed=0, **{**best, "l1": l1}).weight.detach().numpy() != 0
    on_support = train.only_features(support), test.only_features(support)
    refit = [train_elasticrank(on_support[0], passes=passes, seed=s, **best) for s in range(seeds)]
    refit_scores = [ndcgs(predict(m, on_support[1]), on_support[1]) for m in refit]

    rows = [("ElasticRank, dense", dense, np.mean(dense_nz)), (f"ElasticRank, l1={l1:.3g}", sparse, np.mean(sparse_nz)),
            ("  its support, refitted", refit_scores, float(np.mean([m.nonzeros() for m in refit])))]
    try:
        rows.append(("LightGBM lambdarank", lightgbm_runs(tr_path, te_path, seeds), None))
    except ImportError:
        print("LightGBM or scikit-learn not installed: its row is left out (pip install lightgbm scikit-learn)")
    try:
        rows.append(("linear RankSVM", [ranksvm(train_raw, test_raw)], float(train.n_features)))
    except ImportError:
        print("scikit-learn not installed: the RankSVM row is left out")
    rand = {k: random_baseline(test.labels, test.list_offsets, ndcg_at_k, k=k) for k in KS}
    rows.append(("random order (20 draws)", [rand], None))

    print(f"\n{'model':26s} " + " ".join(f"{'NDCG@' + str(k):>8s}" for k in KS) + f" {'non-zeros':>10s}"
          f"   (test lists; mean of {seeds} seeds where seeded)")
    for name, rs, nz in rows:
        print(f"{name:26s} " + " ".join(f"{np.mean([r[k] for r in rs]):8.4f}" for k in KS)
              + f" {'' if nz is None else f'{nz:.0f}':>10s}")
    d5, s5, r5 = (np.mean([r[5] for r in x]) for x in (dense, sparse, refit_scores))
    print(f"\nthe sparse model keeps {np.mean(sparse_nz):.0f} of {train.n_features} features "
          f"({np.mean(sparse_nz) / train.n_features:.1%}) and {s5 / d5:.1%} of the dense model's NDCG@5; "
          f"refitted on its {int(support.sum())} features, {r5 / d5:.1%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the lambdarank folder (rank.train, rank.test, .query)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--passes", type=int, default=20)
    a = ap.parse_args()
    main(a.data, a.seeds, a.passes)
