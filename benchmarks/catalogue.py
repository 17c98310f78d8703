"""Sampled against all pairs as the catalogue grows, on the synthetic shop, in one run.

    python benchmarks/catalogue.py [--users 20000] [--items 20000 200000] [--seeds 1]

For each catalogue size: ``experiment=catalogue`` (each row against 2,048 negatives shared by the
batch, drawn by popularity with importance weights), the same with 4,096 uniform draws at batch
1,536 (the preset before popularity draws), and, where a row of the whole catalogue is affordable
(--all-pairs-up-to, default 20,000 items), the preset with ``loss.negatives.catalogue=true``
(every row against every item).
Prints test NDCG@10 (full catalogue, seeded sample of 10,000 test users) with its standard error,
fit seconds, and training rows per second (positives trained on / ``train_seconds``, the
training epochs without validation and checkpoints, whose costs grow with the catalogue); then, per size,
the sampled objective's NDCG as a share of all pairs' and its fit time as a share of theirs.
The runs of one seed go round by round over the sizes (the VM's speed drifts).
"""
from __future__ import annotations

import argparse
import logging
from typing import Dict, List

import numpy as np
import torch

from quality import train_once

SAMPLED = ["experiment=catalogue"]
UNIFORM = ["experiment=catalogue", "loss.negatives.shared=4096", "loss.negatives.shared_popularity=0",
           "data.batch_size=1536"]
ALL_PAIRS = ["experiment=catalogue", "loss.negatives.catalogue=true"]


def world(users: int, items: int) -> List[str]:
    return ["data=synthetic", f"data.source.n_users={users}", f"data.source.n_items={items}"]


def main(users: int, sizes: List[int], seeds: int, all_pairs_up_to: int, threads: int, uniform: bool) -> None:
    torch.set_num_threads(threads)
    runs: Dict[tuple, List[Dict[str, float]]] = {}
    for seed in range(seeds):
        for n in sizes:
            for name, ov in (("sampled", SAMPLED), ("uniform", UNIFORM), ("all pairs", ALL_PAIRS)):
                if (name == "all pairs" and n > all_pairs_up_to) or (name == "uniform" and (not uniform or n > all_pairs_up_to)):
                    continue
                runs.setdefault((n, name), []).append(train_once([*world(users, n), *ov], seed))
    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))  # noqa: E731
    print(f"\n{'items':>8s} {'objective':10s} {'NDCG@10':>8s} {'± se':>7s} {'fit_s':>8s} {'train_s':>8s} {'rows/s':>9s}  "
          f"({users} users, mean of {seeds} seed(s))")
    for (n, name), rs in runs.items():
        print(f"{n:8d} {name:10s} {mean(rs, 'test/ndcg@10'):8.4f} {mean(rs, 'test/ndcg@10_se'):7.4f} "
              f"{mean(rs, 'fit_seconds'):8.1f} {mean(rs, 'train_seconds'):8.1f} "
              f"{mean(rs, 'fit_positives') / mean(rs, 'train_seconds'):9.0f}")
    print()
    for n in sizes:
        if (n, "all pairs") in runs:
            a = runs[(n, "all pairs")]
            for name in ("sampled", "uniform"):
                if (n, name) not in runs:
                    continue
                s = runs[(n, name)]
                print(f"{n} items: {name} reaches {mean(s, 'test/ndcg@10') / mean(a, 'test/ndcg@10'):.1%} of all "
                      f"pairs' NDCG@10 in {mean(s, 'train_seconds') / mean(a, 'train_seconds'):.1%} of their "
                      f"training epochs' time ({mean(s, 'fit_seconds') / mean(a, 'fit_seconds'):.1%} of their fit "
                      f"time, which adds the same validations and checkpoints to both)")
    rate = {n: mean(runs[(n, "sampled")], "fit_positives") / mean(runs[(n, "sampled")], "train_seconds") for n in sizes}
    base = sizes[0]
    for n in sizes[1:]:
        print(f"sampled rows/s at {n} items: {rate[n] / rate[base]:.2f}x those at {base} items")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--items", type=int, nargs="+", default=[20000, 200000])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--all-pairs-up-to", type=int, default=20000,
                    help="largest catalogue to train all pairs on (a row of N scores per positive's user)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-uniform", action="store_true", help="skip the uniform-draw comparison")
    a = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    main(a.users, a.items, a.seeds, a.all_pairs_up_to, a.threads, not a.no_uniform)
