"""Side-by-side quality on MovieLens-100k under the shared protocol (../shared/bench/README.md):
ua.base / ua.test, positives = ratings >= 4, full catalogue, train positives excluded.

    python benchmarks/quality.py ../shared/data/ml-100k [--seeds 3] [--ablation-split u2]
    python ../shared/bench/ml100k_peers.py ../shared/data/ml-100k --seeds 3   # the peers, same session

Runs the project's preset for several seeds (and, optionally, an ablation ladder on another
split) through the same ``train(cfg)`` as scripts/train.py, and prints the peers' columns:
P@10, R@10, NDCG@10, AUC and train seconds (``fit_seconds``: the training loop alone).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from typing import Dict, List, Sequence

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from load import CHECKOUT  # benchmarks/load.py, beside this script

CONFIGS = str(CHECKOUT / "configs")
QUIET = ["trainer.enable_progress_bar=false", "export=false"]

# Each rung adds one ingredient to the one above; the last is experiment=ml100k.
ABLATION: List[tuple[str, List[str]]] = [
    ("two-tower, sampled negatives (defaults)", []),
    ("+ catalogue negatives (all pairs)", ["loss.negatives.catalogue=true"]),
    ("+ WARP weighting", ["loss.negatives.catalogue=true", "loss.weighting=warp"]),
    ("+ FISM history normalisation (alpha 0.5)", ["loss.negatives.catalogue=true", "loss.weighting=warp",
                                                   "model.history_alpha=0.5"]),
    ("+ cosine lr 3e-3, 6 epochs, no val carve-out", ["experiment=ml100k", "loss.pair_loss=logistic",
                                                       "loss.user_power=0", "model.score.repeat=false"]),
    ("+ hinge loss", ["experiment=ml100k", "loss.user_power=0", "model.score.repeat=false"]),
    ("+ user_power 0.25", ["experiment=ml100k", "model.score.repeat=false"]),
    ("+ repeat term = experiment=ml100k", ["experiment=ml100k"]),
]
# Variations of the preset that were tried and not kept (printed after the ladder).
VARIANTS: List[tuple[str, List[str]]] = [
    ("preset, history of positives only", ["experiment=ml100k", "data.history_min_grade=4"]),
    ("preset without the repeat term, positives-only history", ["experiment=ml100k", "model.score.repeat=false",
                                                                "data.history_min_grade=4"]),
    ("preset, softmax loss instead of hinge", ["experiment=ml100k", "loss.pair_loss=softmax",
                                               "loss.weighting=uniform"]),
]


def run(data_dir: str, overrides: Sequence[str], seed: int) -> Dict[str, float]:
    """One training run; returns its metrics.json content."""
    from rankers.training.train import train

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["data=movielens", f"data.path={data_dir}", f"seed={seed}", *QUIET,
                                          *overrides])
    with tempfile.TemporaryDirectory() as out, open_dict(cfg):
        cfg.paths.output_dir = out
        return train(cfg)


def row(name: str, runs: List[Dict[str, float]]) -> str:
    f = lambda k: float(np.mean([r[k] for r in runs]))  # noqa: E731
    return (f"{name:46s} {f('test/precision@10'):7.4f} {f('test/recall@10'):7.4f} {f('test/ndcg@10'):8.4f} "
            f"{f('test/auc'):7.4f} {f('fit_seconds'):8.2f}")


HEADER = f"{'model':46s} {'P@10':>7s} {'R@10':>7s} {'NDCG@10':>8s} {'AUC':>7s} {'train_s':>8s}"


def main(data_dir: str, seeds: int = 3, ablation_split: str | None = None, threads: int = 2) -> None:
    import torch

    torch.set_num_threads(threads)
    results = [("rankers experiment=ml100k", [run(data_dir, ["experiment=ml100k", "data.split=ua"], s)
                                              for s in range(seeds)])]
    pop = results[0][1]
    lines = [f"{HEADER}  (mean of {seeds} seeds, {int(pop[0]['test_users'])} test users, ua)",
             row("rankers experiment=ml100k", results[0][1]),
             row("popularity (same split)", [{k.replace("popularity/", "test/"): v for k, v in r.items()}
                                             | {"fit_seconds": 0.0} for r in pop])]
    print("\n".join(lines), flush=True)
    if ablation_split:
        print(f"\nAblation on data.split={ablation_split} (seed 0; each line adds one ingredient)\n{HEADER}", flush=True)
        for name, ov in ABLATION:
            print(row(name, [run(data_dir, [*ov, f"data.split={ablation_split}"], 0)]), flush=True)
        print(f"\nVariations of the preset on data.split={ablation_split} (seed 0)", flush=True)
        for name, ov in VARIANTS:
            print(row(name, [run(data_dir, [*ov, f"data.split={ablation_split}"], 0)]), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="the ml-100k folder (never bundled with this project)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation-split", default=None, help="also run the ablation ladder on this split (u1..u5)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    main(a.data, a.seeds, a.ablation_split, a.threads)
