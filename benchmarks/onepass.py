"""The paper's regime: ElasticRank trained in one pass over a large impression log, against
several passes, and the sparsity curve of RDA and PSGD (the paper's Figure 3), in one run.

    python benchmarks/onepass.py [--visits 170000] [--passes 1 2 3 5] [--plot sparsity.png]

Data: the synthetic shop's impression log (rankers.data.synthetic_lists; 3,000 users, 1,000
items; 10 candidates per visit, labels from clicks and purchases), the lists with a click or a
purchase; test lists from other visits. Features min-max scaled within each list. Each
optimiser's step size is fixed (``SETTINGS``). Prints test NDCG@5 and Recall@1 (purchases) per optimiser and number of passes; then,
for one pass, the sweep of each sparsity knob (RDA's λ1, PSGD's pruning threshold) with the
non-zero weights, and writes the plot.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from rankers.data.lists import ListData
from rankers.data.synthetic import World
from rankers.data.synthetic_lists import impression_lists
from rankers.metrics.lists import ndcg_at_k, random_baseline, recall_at_k
from rankers.model.linear import SparseLinear
from rankers.training.listwise import fit, predict
from rankers.training.proximal import OPTIMIZERS

# step sizes from a look at 60,000 visits (one and three passes: 0.3-3 for FOBOS, γ 1-20 for RDA
# moved NDCG@5 by less than 0.01)
SETTINGS = {"fobos": {"lr": 1.0}, "rda": {"gamma": 1.0}, "psgd": {"lr": 1.0}, "tgd": {"lr": 1.0}}
SWEEPS = {"rda": ("l1", [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3]),
          "psgd": ("threshold", [0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0])}


def scores_of(model: SparseLinear, test: ListData) -> Dict[str, float]:
    s = predict(model, test)
    return {"ndcg@5": float(np.mean(ndcg_at_k(s, test.labels, test.list_offsets, 5))),
            "recall@1": float(np.nanmean(recall_at_k(s, test.labels, test.list_offsets, 1, threshold=2.0)))}


def run(train: ListData, test: ListData, name: str, passes: int, batch_lists: int, seed: int = 0,
        **extra) -> Dict[str, float]:
    torch.manual_seed(seed)
    m = SparseLinear(train.n_features)
    opt = OPTIMIZERS[name](m.parameters(), **{**SETTINGS[name], **extra})
    t0 = time.perf_counter()
    fit(m, train, opt, passes=passes, batch_lists=batch_lists, k=5, delta="ndcg", seed=seed)
    return {**scores_of(m, test), "nonzeros": m.nonzeros(), "seconds": time.perf_counter() - t0}


def main(visits: int, test_visits: int, passes: List[int], batch_lists: int, plot: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    world = World(3000, 1000, 25.0, 0)
    t0 = time.perf_counter()
    train = impression_lists(world, visits, seed=0).with_positives().scaled_within_lists()
    test = impression_lists(world, test_visits, seed=1).with_positives().scaled_within_lists()
    print(f"train: {train.n_lists} lists with a click or purchase ({train.n_rows} rows, {len(train.feat_index)} "
          f"stored features, {train.n_features} dimensions); test: {test.n_lists} lists; built in "
          f"{time.perf_counter() - t0:.0f} s; batches of {batch_lists} lists", flush=True)
    rand = {"ndcg@5": random_baseline(test.labels, test.list_offsets, ndcg_at_k, k=5),
            "recall@1": random_baseline(test.labels, test.list_offsets, recall_at_k, k=1, threshold=2.0)}
    print(f"\n{'optimiser':9s} {'passes':>6s} {'NDCG@5':>8s} {'Recall@1':>9s} {'non-zeros':>9s} {'seconds':>8s}   "
          f"(random order: NDCG@5 {rand['ndcg@5']:.4f}, Recall@1 {rand['recall@1']:.4f})")
    best: Dict[str, Dict[int, Dict[str, float]]] = {}
    for name in SETTINGS:
        for p in passes:
            r = run(train, test, name, p, batch_lists)
            best.setdefault(name, {})[p] = r
            print(f"{name:9s} {p:6d} {r['ndcg@5']:8.4f} {r['recall@1']:9.4f} {r['nonzeros']:9d} {r['seconds']:8.1f}",
                  flush=True)
    print()
    for name, by_p in best.items():
        top = max(v["ndcg@5"] for v in by_p.values())
        print(f"{name}: one pass reaches {by_p[passes[0]]['ndcg@5'] / top:.1%} of its best NDCG@5 over "
              f"{', '.join(map(str, passes))} passes")

    curves: Dict[str, List[Dict[str, float]]] = {}
    print(f"\nsparsity, one pass:\n{'optimiser':9s} {'knob':>10s} {'value':>8s} {'non-zeros':>9s} {'NDCG@5':>8s} "
          f"{'Recall@1':>9s}")
    for name, (knob, values) in SWEEPS.items():
        for v in values:
            r = run(train, test, name, 1, batch_lists, **{knob: v})
            curves.setdefault(name, []).append(r)
            print(f"{name:9s} {knob:>10s} {v:8g} {r['nonzeros']:9d} {r['ndcg@5']:8.4f} {r['recall@1']:9.4f}", flush=True)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, metric in zip(axes, ("recall@1", "ndcg@5")):
            for name, rs in curves.items():
                pts = sorted((r["nonzeros"], r[metric]) for r in rs if r["nonzeros"] > 0)  # log axis
                ax.plot(*zip(*pts), marker="o", label=name.upper())
            ax.axhline(rand[metric], color="grey", ls=":", label="random order")
            ax.set_xscale("log")
            ax.set_xlabel("non-zero weights")
            ax.set_title(f"test {metric}, one pass")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"plot: {plot}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visits", type=int, default=170_000, help="training visits (about 60%% have a click)")
    ap.add_argument("--test-visits", type=int, default=20_000)
    ap.add_argument("--passes", type=int, nargs="+", default=[1, 2, 3, 5])
    ap.add_argument("--batch-lists", type=int, default=16)
    ap.add_argument("--plot", type=Path, default=Path("sparsity.png"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    main(a.visits, a.test_visits, a.passes, a.batch_lists, a.plot, a.threads)
