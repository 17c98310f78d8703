"""Lazy elastic-net updates against dense ones, in one run: one pass over the synthetic shop's
impression log, with the hashed user x category cross at 4,096 and at 2^20 buckets (the
paper's 10^5-10^6 dimensions).

    python benchmarks/lazy.py [--visits 60000] [--rounds 2]

Per dimension count and optimiser (RDA, FOBOS, PSGD), the same model trained with dense
gradients (every weight updated each step) and with sparse ones (``SparseLinear(sparse_grad=True)``:
only the batch's features, the rest caught up when read), rounds alternating; prints the
median seconds of the pass, the speed-up, test NDCG@5 of both and the largest weight difference.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rankers.data.synthetic import World
from rankers.data.synthetic_lists import impression_lists
from rankers.metrics.lists import ndcg_at_k
from rankers.model.linear import SparseLinear
from rankers.training.listwise import fit, predict
from rankers.training.proximal import FOBOS, PSGD, RDA

RUNS = {"rda": (RDA, {"gamma": 1.0, "l1": 1e-4}), "fobos": (FOBOS, {"lr": 1.0, "l1": 1e-5, "l2": 1e-4}),
        "psgd": (PSGD, {"lr": 1.0, "l2": 1e-4, "threshold": 0.01})}


def one(train, test, name: str, sparse: bool):
    cls, kw = RUNS[name]
    torch.manual_seed(0)
    m = SparseLinear(train.n_features, sparse_grad=sparse)
    t0 = time.perf_counter()
    fit(m, train, cls(m.parameters(), **kw), passes=1, batch_lists=16, k=5, seed=0)
    seconds = time.perf_counter() - t0
    ndcg = float(np.mean(ndcg_at_k(predict(m.eval(), test), test.labels, test.list_offsets, 5)))
    return seconds, ndcg, m.weight.detach().clone()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visits", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    world = World(3000, 1000, 25.0, 0)
    print(f"{'features':>9s} {'optimiser':9s} {'dense s':>8s} {'lazy s':>8s} {'speed-up':>8s} {'NDCG@5 dense':>12s} "
          f"{'NDCG@5 lazy':>11s} {'max |dw|':>9s}   (one pass, median of {a.rounds} alternating rounds)")
    for buckets in (4096, 1 << 20):
        train = impression_lists(world, a.visits, user_buckets=buckets, seed=0).with_positives().scaled_within_lists()
        test = impression_lists(world, a.visits // 5, user_buckets=buckets, seed=1).with_positives().scaled_within_lists()
        for name in RUNS:
            res = {False: [], True: []}
            for _ in range(a.rounds):
                for sparse in (False, True):
                    res[sparse].append(one(train, test, name, sparse))
            d, s = np.median([r[0] for r in res[False]]), np.median([r[0] for r in res[True]])
            gap = float((res[False][0][2] - res[True][0][2]).abs().max())
            print(f"{train.n_features:9d} {name:9s} {d:8.2f} {s:8.2f} {d / s:7.1f}x {res[False][0][1]:12.4f} "
                  f"{res[True][0][1]:11.4f} {gap:9.1e}", flush=True)


if __name__ == "__main__":
    main()
