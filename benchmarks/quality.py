"""Quality and time to quality on MovieLens-100k under the shared protocol (../shared/bench/README.md):
ua.base / ua.test, positives = ratings >= 4, full catalogue, train positives excluded.

    python benchmarks/quality.py ../shared/data/ml-100k [--seeds 3] [--peers-python PY] [--ablation-split u2]

1. The presets on ua.test (mean over seeds; P@10, R@10, NDCG@10, AUC, ``fit_seconds``: the
   training loop alone), then the peers' table from ../shared/bench/ml100k_peers.py run in this
   same run by PY (an interpreter with LightFM and implicit: benchmark-only peers, never our
   dependencies), and each preset's fit time against LightFM WARP's.
2. Time to quality: validation NDCG@10 against training wall seconds, on a validation split carved
   from ua.base (each user's last 5 positives and what they rated after; ua.test is not read), for
   each preset epoch by epoch, LightFM WARP epochs 1..30 (benchmarks/peer_curves.py, run by PY) and
   EASE; every model is scored by the same function (benchmarks/curves.py). Prints the table and
   writes a PNG plot (matplotlib: ``pip install -e .[bench]``).
3. Optionally the ablation ladder on another split (u1..u5).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from rankers.training.callbacks import TrainClock

from load import CHECKOUT  # benchmarks/load.py, beside this script

CONFIGS = str(CHECKOUT / "rankers" / "conf")
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


# The presets the README reports: all pairs (the catalogue in every row) and sampled (negatives
# shared by the batch, a cost per positive that does not grow with the catalogue).
SAMPLED = ["loss.negatives.catalogue=false", "loss.negatives.uniform=0", "loss.negatives.popular=0",
           "loss.negatives.own=0", "loss.negatives.shared=512"]
PRESETS: List[tuple[str, List[str]]] = [
    ("rankers experiment=ml100k (all pairs)", ["experiment=ml100k"]),
    ("rankers experiment=ml100k_fast (all pairs)", ["experiment=ml100k_fast"]),
    ("rankers experiment=ml100k, 512 shared (sampled)", ["experiment=ml100k", *SAMPLED]),
]
CURVE_SPLIT = ["data.split=ua", "data.val_split={kind: leave_last_n, n: 5}", "callbacks.early_stopping=null"]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def train_once(overrides: Sequence[str], seed: int) -> Dict[str, float]:
    """One training run through the same ``train(cfg)`` as scripts/train.py, in a temp run dir;
    returns its metrics.json content."""
    from rankers.training.train import train

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[f"seed={seed}", *QUIET, *overrides])
    with tempfile.TemporaryDirectory() as out, open_dict(cfg):
        cfg.paths.output_dir = out
        return train(cfg)


def run(data_dir: str, overrides: Sequence[str], seed: int) -> Dict[str, float]:
    """One MovieLens run (``data.path=data_dir``)."""
    return train_once(["data=movielens", f"data.path={data_dir}", *overrides], seed)


class TimeToQuality(TrainClock):
    """Records (epoch, training seconds so far, validation NDCG@10) after every epoch into the JSON
    file ``out``; the seconds are ``TrainClock``'s (the training epochs: data and steps, not
    validation, checkpoints or this scoring). At the start of the fit it writes the split
    (``curves.save_split``) to ``split_out`` for the peers: the training positives and the
    validation positives of this run's data."""

    def __init__(self, out: str, split_out: Optional[str] = None):
        super().__init__()
        self.out, self.split_out = out, split_out
        self.curve = []

    def on_fit_start(self, trainer, pl_module):
        dm = trainer.datamodule
        val = dm.data.val
        lens = val.targets.lengths()
        self.split = dict(n_users=dm.data.n_users, n_items=dm.data.n_items, train_user=dm.sampler.user,
                          train_item=dm.sampler.pos, val_user=np.repeat(val.users, lens), val_item=val.targets.values)
        if self.split_out:
            from curves import save_split
            save_split(self.split_out, **self.split)

    def on_train_epoch_end(self, trainer, pl_module):
        super().on_train_epoch_end(trainer, pl_module)
        from curves import ndcg_at_k
        from rankers.training.datamodule import user_inputs

        dm, net = trainer.datamodule, pl_module.net
        d = dm.data
        users = np.arange(d.n_users)
        inputs = user_inputs(d.user_tokens[users], d.user_weights[users], d.history_fit.padded(users).astype(np.int64))
        was = net.training
        net.eval()
        with torch.no_grad():  # the Scorer's score of every (user, item): what evaluation and export rank
            v, b = net.catalogue_table(*dm.catalogue())
            s = net.scorer.all_items(net.user_vectors(inputs), v.t(), b,
                                     *net.scorer.offsets(inputs.history, inputs.history_weights))
        net.train(was)
        self.curve.append([trainer.current_epoch + 1, self.seconds, ndcg_at_k(s.numpy(), self.split)])
        Path(self.out).write_text(json.dumps(self.curve))


def row(name: str, runs: List[Dict[str, float]]) -> str:
    f = lambda k: float(np.mean([r[k] for r in runs]))  # noqa: E731
    return (f"{name:46s} {f('test/precision@10'):7.4f} {f('test/recall@10'):7.4f} {f('test/ndcg@10'):8.4f} "
            f"{f('test/auc'):7.4f} {f('fit_seconds'):8.2f}")


HEADER = f"{'model':46s} {'P@10':>7s} {'R@10':>7s} {'NDCG@10':>8s} {'AUC':>7s} {'train_s':>8s}"


def peers_table(peers_python: str, data_dir: str, seeds: int, threads: int) -> tuple[str, Dict[str, List[float]]]:
    """The shared bench's table (printed as it comes) and its rows by name: [P, R, NDCG, AUC, train_s]."""
    script = SHARED / "bench" / "ml100k_peers.py"
    if not script.exists():
        raise FileNotFoundError(f"the peers' bench {script} is missing (../shared/bench beside the checkout)")
    res = subprocess.run([peers_python, str(script), data_dir, "--seeds", str(seeds), "--threads", str(threads)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{script} failed under {peers_python}:\n{res.stderr[-2000:]}")
    rows = {}
    for line in res.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 6:
            rows[parts[0]] = [float(x) for x in parts[1:]]
    return res.stdout.rstrip(), rows


def peer_curves(peers_python: str, split: str, seeds: int, threads: int) -> Dict[str, list]:
    res = subprocess.run([peers_python, str(Path(__file__).with_name("peer_curves.py")), split, "--seeds",
                          str(seeds), "--threads", str(threads)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"peer_curves.py failed under {peers_python}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout)


def plot(curves: Dict[str, list], path: str) -> None:
    """NDCG@10 against seconds, one line per model (EASE: one point); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, c in curves.items():
        x, y = [p[1] for p in c], [p[2] for p in c]
        ax.plot(x, y, marker="o" if len(c) == 1 else ".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (log scale; 2 threads)")
    ax.set_ylabel("validation NDCG@10 (ua.base: last 5 positives per user)")
    ax.set_title("MovieLens-100k: time to quality")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def main(data_dir: str, seeds: int = 3, ablation_split: str | None = None, threads: int = 2,
         peers_python: Optional[str] = None, plot_path: str = "outputs/bench/time_to_quality.png",
         curves: bool = True) -> None:
    from curves import mean_curve, seconds_to_reach

    torch.set_num_threads(threads)
    # 1. ua.test: presets round by round (the VM's speed drifts: each seed runs every preset)
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name, _ in PRESETS}
    for s in range(seeds):
        for name, ov in PRESETS:
            runs[name].append(run(data_dir, [*ov, "data.split=ua"], s))
    first = runs[PRESETS[0][0]]
    lines = [f"{HEADER}  (mean of {seeds} seeds, {int(first[0]['test_users'])} test users, ua)"]
    lines += [row(name, runs[name]) for name, _ in PRESETS]
    lines.append(row("popularity (same split)", [{k.replace("popularity/", "test/"): v for k, v in r.items()}
                                                 | {"fit_seconds": 0.0} for r in first]))
    print("\n".join(lines), flush=True)
    warp = None
    if peers_python:
        table, peers = peers_table(peers_python, data_dir, seeds, threads)
        print(f"\nPeers, same run ({Path(peers_python).name} ../shared/bench/ml100k_peers.py --seeds {seeds}):\n{table}")
        warp = peers.get("lightfm-warp")
        if warp:
            print(f"\nFit time against LightFM WARP's {warp[4]:.2f} s (30 epochs, 64 factors):")
            for name, _ in PRESETS:
                fit = float(np.mean([r["fit_seconds"] for r in runs[name]]))
                ndcg = float(np.mean([r["test/ndcg@10"] for r in runs[name]]))
                print(f"  {name:46s} NDCG@10 {ndcg:.4f}  fit {fit:6.2f} s = {fit / warp[4]:4.1f}x")
    if ablation_split:
        print(f"\nAblation on data.split={ablation_split} (seed 0; each line adds one ingredient)\n{HEADER}", flush=True)
        for name, ov in ABLATION:
            print(row(name, [run(data_dir, [*ov, f"data.split={ablation_split}"], 0)]), flush=True)
        print(f"\nVariations of the preset on data.split={ablation_split} (seed 0)", flush=True)
        for name, ov in VARIANTS:
            print(row(name, [run(data_dir, [*ov, f"data.split={ablation_split}"], 0)]), flush=True)
    if not curves:
        return
    # 2. time to quality on the validation split
    with tempfile.TemporaryDirectory() as tmp:
        split = os.path.join(tmp, "split.npz")
        got: Dict[str, list] = {name: [] for name, _ in PRESETS}
        for s in range(seeds):
            for i, (name, ov) in enumerate(PRESETS):
                out = os.path.join(tmp, f"curve-{i}-{s}.json")
                cb = [f"+callbacks.time_to_quality._target_={__name__}.TimeToQuality",
                      f"+callbacks.time_to_quality.out={out}", f"+callbacks.time_to_quality.split_out={split}"]
                run(data_dir, [*ov, *CURVE_SPLIT, *cb], s)
                got[name].append(json.loads(Path(out).read_text()))
        table = {name: mean_curve(c) for name, c in got.items()}
        if peers_python:
            pc = peer_curves(peers_python, split, seeds, threads)
            table["LightFM WARP"] = mean_curve(pc["lightfm-warp"])
            table["EASE (lambda 500)"] = pc["ease"][0]
    print(f"\nTime to quality: validation NDCG@10 (ua.base: each user's last 5 positives held out) against "
          f"training seconds, mean of {seeds} seeds")
    print(f"{'model':48s} {'epoch':>5s} {'seconds':>8s} {'NDCG@10':>8s}")
    for name, c in table.items():
        show = c if len(c) <= 8 else [p for p in c if p[0] in (1, 2, 3, 5, 10, 15, 20, 25, 30)]
        for p in show:
            print(f"{name:48s} {int(p[0]):5d} {p[1]:8.2f} {p[2]:8.4f}")
    if "LightFM WARP" in table:
        final_s, final = table["LightFM WARP"][-1][1], table["LightFM WARP"][-1][2]
        print(f"\nSeconds to reach LightFM WARP's final validation NDCG@10 {final:.4f} (LightFM: {final_s:.2f} s):")
        for name, c in table.items():
            if name.startswith("rankers"):
                t = seconds_to_reach(c, final)
                print(f"  {name:48s} " + ("never" if t is None else f"{t:6.2f} s = {t / final_s:4.2f}x"))
    plot(table, plot_path)
    print(f"\nplot: {plot_path}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="the ml-100k folder (never bundled with this project)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation-split", default=None, help="also run the ablation ladder on this split (u1..u5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers-python", default=os.environ.get("PEERS_PYTHON"),
                    help="interpreter with LightFM and implicit for the peers (default: $PEERS_PYTHON; none: "
                         "rankers alone)")
    ap.add_argument("--plot", default="outputs/bench/time_to_quality.png", help="where the PNG plot goes")
    ap.add_argument("--no-curves", action="store_true", help="the ua.test tables alone")
    a = ap.parse_args()
    if not Path(a.data).is_dir():
        ap.error(f"{a.data}: no such folder (the ml-100k folder, e.g. ../shared/data/ml-100k)")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    main(a.data, a.seeds, a.ablation_split, a.threads, a.peers_python, a.plot, not a.no_curves)
