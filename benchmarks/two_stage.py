"""Two stages against the two-tower model alone, on the synthetic shop's impression log, in one run.

    python benchmarks/two_stage.py [--seeds 3] [--lists 5000] [--workdir outputs/bench_two_stage]

Per seed: the two-tower model is trained on the shop's event log (the default job,
``python scripts/train.py seed=S``), then ElasticRank in one pass over the impression log with
the two-tower score as one of its features (``experiment=two_stage``). Both rank the same test
lists (what the widget showed, labels from clicks and purchases): the table gives NDCG@k and
Recall@k (purchases) of the reranker, the retriever alone and random order, mean ± sd over
seeds, from each run's metrics.json.

Then the production path, on ``--lists`` test lists of the first seed: each list through the
two-stage model.ts ``rerank`` (the list's pair columns as candidate features, the item columns
from the export) and through the retriever's model.ts ``rerank``: Recall@1 of each with the
paired difference's 95% interval, the largest gap to the training-side scores, and the
latency of rerank and of recommend (m candidates).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import List

import numpy as np
import torch

from rankers.data.synthetic_lists import SyntheticListSource, encode_lists
from rankers.model.list_encoder import ListEncoding
from rankers.training.train import train
from rankers.training.tuning import compose

PAIR_COLUMNS = ["price_vs_usual", "abs_price_vs_usual", "category_affinity", "brand_affinity", "segment", "country"]
QUIET = ["trainer.enable_progress_bar=false"]


def run_seed(seed: int, workdir: Path) -> dict:
    retriever = workdir / f"retriever{seed}"
    t0 = time.perf_counter()
    train(compose([f"seed={seed}", *QUIET], retriever))
    t1 = time.perf_counter()
    m = train(compose(["experiment=two_stage", f"data.source.retriever={retriever / 'export'}", f"seed={seed}",
                       *QUIET], workdir / f"two_stage{seed}"))
    return {**m, "retriever_seconds": t1 - t0, "two_stage_seconds": time.perf_counter() - t1}


def table(runs: List[dict], ks=(1, 3, 5)) -> str:
    lines = [f"{'metric':10s} {'two-stage':>17s} {'two-tower alone':>17s} {'random':>8s} {'difference':>11s}"]
    for k in ks:
        for m in ("recall", "ndcg"):
            a = np.array([r[f"test/{m}@{k}"] for r in runs])
            b = np.array([r[f"retriever/{m}@{k}"] for r in runs])
            rnd = np.mean([r[f"random/{m}@{k}"] for r in runs])
            lines.append(f"{m + '@' + str(k):10s} {a.mean():8.4f} ± {a.std():6.4f} {b.mean():8.4f} ± {b.std():6.4f} "
                         f"{rnd:8.4f} {np.mean(a - b):+11.4f}")
    return "\n".join(lines)


def production_check(workdir: Path, seed: int, n_lists: int) -> None:
    cfg = compose(["experiment=two_stage", f"data.source.retriever={workdir / f'retriever{seed}' / 'export'}",
                   f"seed={seed}"], workdir / "unused")
    src_cfg = {k: v for k, v in cfg.data.source.items() if k != "_target_"}
    df = SyntheticListSource(**src_cfg).table("test")
    two = torch.jit.load(str(workdir / f"two_stage{seed}" / "export" / "model.ts"))
    one = torch.jit.load(str(workdir / f"retriever{seed}" / "export" / "model.ts"))
    meta = json.loads((workdir / f"two_stage{seed}" / "export" / "metadata.json").read_text())
    # the training side's scores of the same rows: linear.json's weights over the encoded, scaled lists
    lin = json.loads((workdir / f"two_stage{seed}" / "export" / "linear.json").read_text())
    enc = ListEncoding.from_state(lin["encoding"])
    data = encode_lists(df, enc, "test").scaled_within_lists()
    w = np.zeros(enc.n_features, np.float32)
    w[lin["index"]] = lin["weight"]
    trained = np.bincount(data.feature_rows(), data.feat_value * w[data.feat_index], data.n_rows)
    start = dict(zip(map(str, data.list_ids.tolist()), data.list_offsets[:-1].tolist()))
    lists = df.groupby("list_id", sort=False)
    keys = list(lists.groups.keys())
    pick = np.random.default_rng(0).choice(len(keys), min(n_lists, len(keys)), replace=False)
    r_two, r_one, t_two, t_one, t_rec, gap = [], [], [], [], [], 0.0
    for j in pick:
        rows = lists.get_group(keys[j])
        bought = set(rows["item_id"][rows["label"] >= 2.0].astype(str))
        if not bought:
            continue
        user, items = str(rows["user_id"].iloc[0]), [str(x) for x in rows["item_id"]]
        cand = {c: [str(x) for x in rows[c]] for c in PAIR_COLUMNS}
        s = time.perf_counter()
        ids2, s2 = two.rerank(user, {}, items, cand)
        t_two.append(time.perf_counter() - s)
        want = dict(zip(items, trained[start[str(keys[j])]:][:len(items)]))
        gap = max(gap, max(abs(v - want[i]) for i, v in zip(ids2, s2)))
        s = time.perf_counter()
        ids1, _ = one.rerank(user, {}, items, {})
        t_one.append(time.perf_counter() - s)
        r_two.append((ids2[0] in bought) / len(bought))
        r_one.append((ids1[0] in bought) / len(bought))
    for u in df["user_id"].astype(str).unique()[:300]:
        s = time.perf_counter()
        two.recommend(u, {}, 10, [])
        t_rec.append(time.perf_counter() - s)
    d = np.array(r_two) - np.array(r_one)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    print(f"\nmodel.ts on {len(d)} test lists with a purchase (seed {seed}): Recall@1 two-stage {np.mean(r_two):.4f}, "
          f"two-tower alone {np.mean(r_one):.4f}; difference {d.mean():+.4f} [{d.mean() - half:+.4f}, "
          f"{d.mean() + half:+.4f}] (95%); largest |model.ts score - training-side score| {gap:.2e}")
    print(f"latency (ms, p50 / p99): two-stage rerank of {len(items)} candidates "
          f"{1e3 * np.median(t_two):.2f} / {1e3 * np.quantile(t_two, 0.99):.2f}; two-tower rerank "
          f"{1e3 * np.median(t_one):.2f} / {1e3 * np.quantile(t_one, 0.99):.2f}; two-stage recommend k=10 of "
          f"m={meta['candidates']} {1e3 * np.median(t_rec):.2f} / {1e3 * np.quantile(t_rec, 0.99):.2f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lists", type=int, default=5000, help="test lists sent through model.ts")
    ap.add_argument("--workdir", type=Path, default=Path("outputs/bench_two_stage"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="read the runs already in --workdir (no training)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.reuse:
        runs = [json.loads((a.workdir / f"two_stage{s}" / "metrics.json").read_text()) for s in range(a.seeds)]
        for r in runs:
            r.update(retriever_seconds=float("nan"), two_stage_seconds=float("nan"))
    else:
        runs = [run_seed(s, a.workdir) for s in range(a.seeds)]
    print(f"\nsynthetic impression log, {runs[0]['test_lists']} test lists per seed, {a.seeds} seeds "
          f"(two-tower fit {np.mean([r['retriever_seconds'] for r in runs]):.0f} s, two-stage one pass "
          f"{np.mean([r['two_stage_seconds'] for r in runs]):.0f} s per seed incl. data)")
    print(table(runs))
    print("Recall@1 difference per seed: " + ", ".join(f"{r['test/recall@1'] - r['retriever/recall@1']:+.4f}"
                                                      for r in runs))
    production_check(a.workdir, 0, a.lists)


if __name__ == "__main__":
    main()
