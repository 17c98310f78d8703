"""E-commerce scale, stage by stage, beside implicit's ALS on the same users, in one run.

    python benchmarks/scale.py                                   # 1M users, 200k items, ~25M events
    python benchmarks/scale.py --users 100000 --items 50000      # a quick look

Stages (wall seconds, rows/s, peak RSS of the stage): generate the synthetic world (or reuse it
from --cache), read + encode it, one training epoch (``experiment=shop``), evaluation over the
full catalogue on a seeded sample of test users, export, load model.ts, ``recommend`` p50/p99.
Then the peer: implicit's ALS (a bench-only dependency: ``pip install implicit``) tuned on a
grid (factors, regularisation, confidence alpha) against our validation split on a sample of
users, refitted with the best on all the training events, and scored by the same evaluation
code on the same test users. Prints a table; ``--json`` also writes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from load import CHECKOUT, summarize  # benchmarks/load.py, beside this script

log = logging.getLogger("scale")


def peak_rss_reset() -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS on writing 5 to clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Times stages and records their peak RSS; ``rows`` (set inside) gives rows/s."""

    def __init__(self):
        self.rows: List[Dict] = []

    def __call__(self, name: str, unit: str = "rows"):
        stages = self

        class _Stage:
            def __enter__(self):
                peak_rss_reset()
                self.rows, self.note, self.t0 = None, "", time.perf_counter()
                return self

            def __exit__(self, *exc):
                if exc[0] is None:
                    wall = time.perf_counter() - self.t0
                    stages.rows.append({"stage": name, "seconds": wall, "rows": self.rows, "unit": unit,
                                        "per_second": (self.rows / wall) if self.rows else None,
                                        "peak_rss_mb": peak_rss_mb(), "note": self.note})
                    print(stages.line(stages.rows[-1]), flush=True)

        return _Stage()

    @staticmethod
    def line(r: Dict) -> str:
        ps = r["per_second"]
        rate = (f"{ps:>12,.0f} {r['unit']}/s" if ps >= 10 else f"{1 / ps:>10,.1f} s per {r['unit'].rstrip('s')}") \
            if ps else " " * 19
        return f"  {r['stage']:<22} {r['seconds']:8.1f} s {rate}   peak RSS {r['peak_rss_mb']:7,.0f} MB  {r['note']}"


def compose(overrides: List[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CHECKOUT / "rankers" / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def evaluate_factors(U: np.ndarray, V: np.ndarray, split, threads: int, batch: int = 512) -> Dict[str, float]:
    """Our full-catalogue metrics for a plain inner-product model: U [users of split, d], V [N, d]."""
    from rankers.training.evaluation import MetricAccumulator

    acc = MetricAccumulator(len(V), (10,))
    for s in range(0, len(split.users), batch):
        sl = slice(s, s + batch)
        acc.add(np.ascontiguousarray(U[split.users[sl]], np.float32), np.ascontiguousarray(V, np.float32),
                split.targets.lists(sl), split.exclude.lists(sl), threads)
    out = acc.result()
    out.update({f"{k}_se": v for k, v in acc.standard_errors().items()})
    return out


def als(data, stages: Stages, threads: int, tune_users: float, seed: int, grid: List[Dict]) -> Dict:
    """implicit's ALS on the training events (confidence = alpha x grade), tuned on the validation
    split: each grid point fitted on the rows of the validation users and of a share
    ``tune_users`` of the others (all rows would cost 5x the time for the same ranking of the
    grid), scored on every validation user; then refitted on everyone with the best."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    tr = data.train

    def fit(users_kept: Optional[np.ndarray], params: Dict):
        keep = np.ones(len(tr), bool) if users_kept is None else users_kept[tr.user]
        m = sp.csr_matrix((params["alpha"] * tr.grade[keep].astype(np.float32), (tr.user[keep], tr.item[keep])),
                          shape=(data.n_users, data.n_items))
        model = AlternatingLeastSquares(factors=params["factors"], regularization=params["regularization"],
                                        iterations=params["iterations"], random_state=seed, num_threads=threads)
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads would fight it
            model.fit(m, show_progress=False)
        return np.asarray(model.user_factors), np.asarray(model.item_factors)

    rng = np.random.default_rng(seed)
    val = data.val
    sampled = rng.random(data.n_users) < tune_users
    sampled[val.users] = True
    results = []
    with stages(f"ALS grid ({len(grid)} fits)", "fits") as st:
        for params in grid:
            U, V = fit(sampled, params)
            r = evaluate_factors(U, V, val, threads)
            results.append((r["ndcg@10"], params))
            log.info("ALS %s: validation ndcg@10 %.4f", params, r["ndcg@10"])
        st.rows = len(grid)
        best = max(results, key=lambda x: x[0])[1]
        st.note = (f"best {best} (validation NDCG@10 {max(results, key=lambda x: x[0])[0]:.4f} on "
                   f"{len(val.users):,} users; fitted on {int(sampled.sum()):,} users' rows)")
    with stages("ALS fit (best)", "rows") as st:
        U, V = fit(None, best)
        st.rows = len(tr)
    with stages("ALS evaluation", "users") as st:
        out = evaluate_factors(U, V, data.test, threads)
        st.rows = len(data.test.users)
    out["params"] = best
    out["grid"] = [{"ndcg@10": v, **p} for v, p in results]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--views", type=float, default=25.0, help="mean views per user")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(CHECKOUT / "outputs" / "cache"), help="where the world is written / reused")
    p.add_argument("--eval-users", type=int, default=10_000, help="test users evaluated (eval.max_users)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--als", action=argparse.BooleanOptionalAction, default=True, help="run the ALS peer")
    p.add_argument("--als-tune-users", type=float, default=0.2, help="share of users the ALS grid is tuned on")
    p.add_argument("--override", action="append", default=[], help="extra Hydra overrides for our run")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "rankers.data.synthetic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(a.threads)

    import pytorch_lightning as pl

    from rankers.artifact.schema import ExportBundle
    from rankers.artifact.writer import export
    from rankers.data.synthetic import dataset_dir, write_dataset
    from rankers.training.callbacks import FiniteGuard
    from rankers.training.train import build

    stages = Stages()
    print(f"scale: {a.users:,} users, {a.items:,} items, {a.views:g} views per user, {a.threads} threads", flush=True)
    with stages("generate", "events") as st:
        d = dataset_dir(a.cache, {"n_users": a.users, "n_items": a.items, "mean_views": a.views, "seed": a.seed})
        reused = (d / "manifest.json").is_file()
        d = write_dataset(a.cache, a.users, a.items, a.views, a.seed)
        manifest = json.loads((d / "manifest.json").read_text())
        st.rows, st.note = manifest["events"], f"{d.name}" + (" (reused: delete it to time generation)" if reused else "")
    cfg = compose(["experiment=shop", f"data.source.n_users={a.users}", f"data.source.n_items={a.items}",
                   f"data.source.mean_views={a.views}", f"data.source.cache_dir={a.cache}",
                   "data.source.cache_min_events=0", f"eval.max_users={a.eval_users}", f"num_threads={a.threads}",
                   f"seed={a.seed}", *a.override])
    with stages("read + encode", "events") as st:
        dm, module = build(cfg)
        data = dm.data
        st.rows = manifest["events"]
        st.note = (f"{data.n_users:,} users, {data.n_items:,} items, {len(data.train):,} training rows, "
                   f"{len(dm.sampler):,} positives")
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[FiniteGuard(check_params_every_n_steps=500)],
                         reload_dataloaders_every_n_epochs=1)
    with stages("training epoch", "positives") as st:
        trainer.fit(module, datamodule=dm)
        st.rows = len(dm.sampler)
    with stages("evaluation", "users") as st:
        trainer.test(module, datamodule=dm, verbose=False)
        ours = {k.partition("/")[2]: v for k, v in module.last_metrics["test"].items()}
        ours.update({f"{k.partition('/')[2]}_se": v for k, v in module.last_errors["test"].items()})
        st.rows = len(data.test.users)
    work = Path(tempfile.mkdtemp(prefix="rankers-scale-"))
    with stages("export", "users") as st:
        out = export(module.net, ExportBundle.from_state(module.bundle), work / "export", pt2=False)
        st.rows = data.n_train_users
        st.note = f"model.ts {os.path.getsize(out / 'model.ts') / 1e6:,.0f} MB"
    with stages("load model.ts") as st:
        m = torch.jit.load(str(out / "model.ts"))
    users = [str(data.user_ids[u]) for u in np.random.default_rng(a.seed).integers(0, data.n_train_users, 1100)]
    with stages("recommend (k=100)", "calls") as st:
        times = []
        for i, u in enumerate(users):
            t = time.perf_counter()
            m.recommend(u, {}, 100, [])
            if i >= 100:  # warm-up
                times.append(time.perf_counter() - t)
        s = summarize(times)
        st.rows, st.note = len(times), f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms"
    results = {"ours": ours, "recommend": s, "stages": stages.rows, "config": vars(a)}
    if a.als:
        # A 12-fit grid at 1M users (regularisation 0.01 and 0.1, alpha 1/10/40) picked alpha 40, its
        # edge, and regularisation moved validation NDCG@10 by <= 0.0001: the fits go to alpha instead.
        grid = [{"factors": f, "regularization": 0.01, "alpha": al, "iterations": 15}
                for f in (32, 64) for al in (10.0, 40.0, 100.0)]
        results["als"] = als(data, stages, a.threads, a.als_tune_users, a.seed, grid)
    print(f"\nNDCG@10 on the same {len(data.test.users):,} test users (± one standard error):")
    print(f"  rankers experiment=shop, 1 epoch  {ours['ndcg@10']:.4f} ± {ours['ndcg@10_se']:.4f}   "
          f"(P@10 {ours['precision@10']:.4f}, R@10 {ours['recall@10']:.4f})")
    if a.als:
        r = results["als"]
        print(f"  implicit ALS, tuned               {r['ndcg@10']:.4f} ± {r['ndcg@10_se']:.4f}   "
              f"(P@10 {r['precision@10']:.4f}, R@10 {r['recall@10']:.4f}; {r['params']})")
    total = sum(r["seconds"] for r in stages.rows)
    print(f"whole bench {total / 60:.1f} min; peak RSS {max(r['peak_rss_mb'] for r in stages.rows):,.0f} MB")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
