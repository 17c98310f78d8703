"""The two-stage model.ts's latency with the item-only features encoded once per item at export
(the default) against encoding them from the stored cells on every request, in one run.

    python benchmarks/rerank_latency.py RUN_DIR [--requests 200] [--rounds 5]

RUN_DIR: a finished ``experiment=two_stage`` run on the synthetic shop (``benchmarks/two_stage.py``
leaves them under its workdir as two_stage<seed>). Both model.ts files are built from its
linear.json and its retriever; requests are random users and 10 random candidates with random
pair features. Checks that both give the same rankings and scores, then times ``rerank`` (10
candidates) and ``recommend`` (k = 10 of the m retrieved) round by round, one thread.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rankers.artifact.two_stage import export_two_stage
from rankers.data.synthetic import World
from rankers.data.synthetic_lists import ITEM_COLUMNS, item_frame
from rankers.model.list_encoder import ListEncoding

PAIRS = ["price_vs_usual", "abs_price_vs_usual", "category_affinity", "brand_affinity"]


def build(run: Path, out: Path, encode_items: bool):
    export = run / "export"
    meta, lin = json.loads((export / "metadata.json").read_text()), json.loads((export / "linear.json").read_text())
    enc = ListEncoding.from_state(lin["encoding"])
    w = torch.zeros(enc.n_features)
    w[lin["index"]] = torch.tensor(lin["weight"])
    src = meta["config"]["data"]["source"]
    world = World(src["n_users"], src["n_items"], src["mean_views"], src["seed"])
    export_two_stage(out, meta["retriever"], enc, w, lin["scale"] == "list", item_frame(world), ITEM_COLUMNS,
                     meta["candidates"], meta["retrieval_column"], encode_items=encode_items)
    return torch.jit.load(str(out / "model.ts")), src, meta["candidates"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, flag in (("cells per request", False), ("encoded per item", True)):
            models[name], src, m = build(a.run, Path(tmp) / name.replace(" ", "_"), flag)
    rng = np.random.default_rng(0)
    reqs = [(f"u{rng.integers(src['n_users'])}", [f"i{i}" for i in rng.choice(src["n_items"], 10, replace=False)],
             {c: [f"{x:.3f}" for x in rng.normal(size=10)] for c in PAIRS}) for _ in range(a.requests)]
    base, fast = models.values()
    for u, items, cand in reqs[:50]:
        x, y = base.rerank(u, {}, items, cand), fast.rerank(u, {}, items, cand)
        assert x[0] == y[0] and np.allclose(x[1], y[1], atol=1e-5), "the two exports disagree"
        assert base.recommend(u, {}, 10, [])[0] == fast.recommend(u, {}, 10, [])[0], "the two exports disagree"
    times = {name: {"rerank": [], "recommend": []} for name in models}
    for _ in range(a.rounds):
        for name, mod in models.items():
            for u, items, cand in reqs:
                t = time.perf_counter()
                mod.rerank(u, {}, items, cand)
                times[name]["rerank"].append(time.perf_counter() - t)
            for u, _, _ in reqs[: max(1, a.requests // 4)]:
                t = time.perf_counter()
                mod.recommend(u, {}, 10, [])
                times[name]["recommend"].append(time.perf_counter() - t)
    print(f"same rankings and scores on 50 requests; ms, p50 / p99, {a.rounds} alternating rounds, one thread")
    print(f"{'item features':18s} {'rerank 10':>16s} {'recommend 10 of ' + str(m):>22s}")
    for name, t in times.items():
        r, c = np.array(t["rerank"]) * 1e3, np.array(t["recommend"]) * 1e3
        print(f"{name:18s} {np.median(r):7.3f} / {np.quantile(r, .99):6.3f} {np.median(c):13.3f} / "
              f"{np.quantile(c, .99):6.3f}")


if __name__ == "__main__":
    main()
