"""Warm-start retraining against training from scratch, on the synthetic shop, in one run.

    python benchmarks/warm.py [--users 6000] [--items 1500] [--seeds 3] [--warm "experiment=retrain" ...]

The shop's log is cut in time: the test is every positive after the 90% time quantile (a
temporal split); the retraining reads everything before it. The previous model was trained on
the log up to the 86% quantile without a few users and items (``--new-share``) that appear only
later: the retraining data is the previous model's plus about 10% new events, with new users
and items. Per seed, round by round (the VM's speed drifts): the retraining from scratch (the
default training, early stopping on a temporal validation split) and the warm retraining
(``init_from=`` the previous export; each ``--warm`` setting, overrides separated by spaces:
by default ``experiment=retrain``, and one epoch at the default learning rate). Prints test NDCG@10 with its
standard error, fit and training-epoch seconds, the from-scratch seed-to-seed spread, and each
warm setting's time as a share of from scratch's.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from quality import CONFIGS, QUIET, train_once

from rankers.data.synthetic import events_frame, feature_overrides, generate

TEST_CUT, PREVIOUS_CUT = 0.9, 0.86


def write_shop(root: Path, users: int, items: int, mean_views: float, new_share: float, seed: int) -> Dict[str, object]:
    """events.parquet (all), previous.parquet (the previous model's), users/items tables; the cuts."""
    log, users_df, items_df = generate(users, items, mean_views, seed)
    log = log.deduplicate()
    df = events_frame(log)
    test_cut, prev_cut = (float(np.quantile(df.timestamp, q)) for q in (TEST_CUT, PREVIOUS_CUT))
    rng = np.random.default_rng(seed)
    new_users = rng.choice(np.asarray(log.user_ids), int(new_share * users), replace=False)
    new_items = rng.choice(np.asarray(log.item_ids), int(new_share * items), replace=False)
    prev = df[(df.timestamp < prev_cut) & ~df.user_id.isin(new_users) & ~df.item_id.isin(new_items)]
    root.mkdir(parents=True, exist_ok=True)
    df.to_parquet(root / "events.parquet")
    prev.to_parquet(root / "previous.parquet")
    users_df.to_parquet(root / "users.parquet")
    items_df.to_parquet(root / "items.parquet")
    retrain = int((df.timestamp < test_cut).sum())
    return {"test_cut": test_cut, "retrain_events": retrain, "previous_events": len(prev),
            "new_events": retrain - len(prev), "new_users": len(new_users), "new_items": len(new_items)}


def data_overrides(root: Path, train_file: str, split: str) -> List[str]:
    return ["data=files", f"data.train={root / train_file}", "data.test=null",
            *feature_overrides(root / "users.parquet", root / "items.parquet"), "data.id_dropout=0.1",
            "~data.split", f"+data.split={split}",
            "~data.val_split", "+data.val_split={kind:temporal,test_fraction:0.05}"]


def train_into(out: Path, overrides: List[str], seed: int) -> Dict[str, float]:
    """A training run that keeps its run directory (and export) in ``out``."""
    from rankers.training.train import train

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[f"seed={seed}", *QUIET, *overrides, "export=true"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return train(cfg)


def main(users: int, items: int, mean_views: float, seeds: int, warm: List[str], new_share: float,
         threads: int) -> None:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shop = write_shop(root / "shop", users, items, mean_views, new_share, seed=0)
        print(f"shop: {users} users, {items} items; previous model on {shop['previous_events']} events; retraining "
              f"on {shop['retrain_events']} ({shop['new_events'] / shop['retrain_events']:.1%} new, with "
              f"{shop['new_users']} new users and {shop['new_items']} new items)", flush=True)
        base = data_overrides(root / "shop", "events.parquet", f"{{kind:temporal,cutoff:{shop['test_cut']}}}")
        # the previous model: the default training on the earlier log (its own test: the last 10% of it)
        prev_split = "{kind:temporal,test_fraction:0.1}"
        train_into(root / "prev", data_overrides(root / "shop", "previous.parquet", prev_split), seed=0)
        runs: Dict[str, List[Dict[str, float]]] = {}
        for seed in range(seeds):
            runs.setdefault("from scratch", []).append(train_once(base, seed))
            for w in warm:
                runs.setdefault(f"warm: {w}", []).append(
                    train_once([*base, f"init_from={root / 'prev' / 'export'}", *w.split()], seed))
    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))  # noqa: E731
    print(f"\n{'retraining':48s} {'NDCG@10':>8s} {'± se':>7s} {'min':>7s} {'max':>7s} {'fit_s':>7s} {'train_s':>8s} "
          f"{'epochs':>6s}  (mean of {seeds} seed(s))")
    for name, rs in runs.items():
        nd = [r["test/ndcg@10"] for r in rs]
        print(f"{name:48s} {np.mean(nd):8.4f} {mean(rs, 'test/ndcg@10_se'):7.4f} {min(nd):7.4f} {max(nd):7.4f} "
              f"{mean(rs, 'fit_seconds'):7.1f} {mean(rs, 'train_seconds'):8.1f} {mean(rs, 'epochs'):6.1f}")
    scratch = runs["from scratch"]
    lo = min(r["test/ndcg@10"] for r in scratch)
    print(f"\nfrom scratch, seed-to-seed: NDCG@10 {lo:.4f} .. {max(r['test/ndcg@10'] for r in scratch):.4f}")
    for name, rs in runs.items():
        if name == "from scratch":
            continue
        reached = np.mean([r["test/ndcg@10"] for r in rs]) >= lo
        print(f"{name}: NDCG@10 {'within or above' if reached else 'below'} the from-scratch spread, in "
              f"{mean(rs, 'fit_seconds') / mean(scratch, 'fit_seconds'):.1%} of its fit time "
              f"({mean(rs, 'train_seconds') / mean(scratch, 'train_seconds'):.1%} of its training epochs' time)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--mean-views", type=float, default=25.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--warm", nargs="+", default=["experiment=retrain", "trainer.max_epochs=1"],
                    help="warm settings, each a space-separated list of overrides")
    ap.add_argument("--new-share", type=float, default=0.03, help="share of users and of items that are new")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    main(a.users, a.items, a.mean_views, a.seeds, a.warm, a.new_share, a.threads)
