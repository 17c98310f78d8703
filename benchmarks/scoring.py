"""Benchmark rankers.retrieval (the C++ core) against brute-force baselines and memory/GEMM floors.

    python benchmarks/scoring.py --n 1000000 --d 64 --k 100 --threads 2 --batches 1,16,256

Prints median milliseconds per call for each batch size B, with ratios to the two
floors: one read of the items (X.sum()) and the score matrix alone (q @ X.T). The methods
of one B are timed in rounds, each round calling every method once, so a drift of the
machine's speed touches all of them alike (medians over --repeats rounds). "1 thread" rows run the same call on one
thread, beside the --threads run.
"rankers.retrieval.topk bf16 (factor F)" rows scan a bfloat16 copy of the items
and re-score k * F candidates exactly; their last column is recall@k against
the exact result. At B=1 the "tiled" rows run the packed-tile scan (explicit
item_tile) that a single query otherwise skips, for comparison in the same run.
Then score_candidates microseconds per call.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict

import numpy as np
import torch

from load import time_interleaved  # benchmarks/load.py, beside this script
from rankers import retrieval as scoring


def numpy_topk(q: np.ndarray, X: np.ndarray, k: int):
    s = q @ X.T
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(s, part, 1)
    o = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(top, o, 1), np.take_along_axis(part, o, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,16,256")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--factors", default="4", help="approx_factor values for the bf16 rows ('' for none)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    X = rng.standard_normal((a.n, a.d), dtype=np.float32)
    Xt = torch.from_numpy(X)
    Xb = scoring.to_bf16(X)
    factors = [int(f) for f in a.factors.split(",") if f]
    try:
        import faiss  # optional

        faiss.omp_set_num_threads(a.threads)
        index = faiss.IndexFlatIP(a.d)
        index.add(X)
    except ImportError:
        index = None

    print(f"N={a.n} d={a.d} k={a.k} threads={a.threads} kernel={scoring.kernel_name()} "
          f"faiss={'yes' if index is not None else 'not installed'}")
    print(f"{'B':>5} {'method':<48} {'ms':>10} {'x scan':>8} {'x gemm':>8} {'recall':>8}")
    tile = 16 * 1024 // (4 * a.d)  # the packed-tile scan that one query otherwise skips
    for B in [int(b) for b in a.batches.split(",")]:
        q = rng.standard_normal((B, a.d), dtype=np.float32)
        qt = torch.from_numpy(q)
        fns: Dict[str, Callable[[], object]] = {
            "floor: X.sum()": lambda: Xt.sum(),
            "floor: q @ X.T": lambda: qt @ Xt.T,
            "rankers.retrieval.topk": lambda: scoring.topk(q, X, a.k, num_threads=a.threads),
        }
        if a.threads > 1:
            fns["rankers.retrieval.topk, 1 thread"] = lambda: scoring.topk(q, X, a.k, num_threads=1)
        if B == 1:
            fns["rankers.retrieval.topk tiled"] = lambda: scoring.topk(q, X, a.k, num_threads=a.threads,
                                                                       item_tile=tile)
        fns["torch.topk(q @ X.T)"] = lambda: torch.topk(qt @ Xt.T, a.k)
        fns["numpy argpartition"] = lambda: numpy_topk(q, X, a.k)
        if index is not None:
            fns["faiss IndexFlatIP"] = lambda: index.search(q, a.k)
        _, exact = scoring.topk(q, X, a.k, num_threads=a.threads)
        recall: Dict[str, float] = {}
        for f in factors:
            variants = {f"rankers.retrieval.topk bf16 (factor {f})": {}}
            if a.threads > 1:
                variants[f"rankers.retrieval.topk bf16, 1 thread (factor {f})"] = {"num_threads": 1}
            if B == 1:
                variants[f"rankers.retrieval.topk bf16 tiled (factor {f})"] = {"item_tile": tile}
            for name, kw in variants.items():
                kw = {"num_threads": a.threads, **kw}
                fns[name] = lambda kw=kw, f=f: scoring.topk(q, X, a.k, approx=Xb, approx_factor=f, **kw)
                _, got = fns[name]()
                recall[name] = float(np.mean([np.intersect1d(e, g).size / a.k for e, g in zip(exact, got)]))
        ms = {n: v["p50_ms"] for n, v in time_interleaved(fns, a.repeats, warmup=1, rounds=a.repeats).items()}
        scan, gemm = ms["floor: X.sum()"], ms["floor: q @ X.T"]
        for name, t in ms.items():
            r = f"{recall[name]:>8.3f}" if name in recall else ""
            print(f"{B:>5} {name:<48} {t:>10.2f} {t / scan:>8.2f} {t / gemm:>8.2f} {r}")

    # score_candidates: per-request re-ranking of an explicit candidate list.
    q = rng.standard_normal(a.d, dtype=np.float32)
    calls = 2000
    cands = [rng.integers(0, a.n, a.candidates) for _ in range(calls)]
    same = cands[0]
    scoring.score_candidates(q, X, same)
    t = time.perf_counter()
    for _ in range(calls):
        scoring.score_candidates(q, X, same)
    hot = (time.perf_counter() - t) / calls * 1e6
    t = time.perf_counter()
    for c in cands:
        scoring.score_candidates(q, X, c)
    cold = (time.perf_counter() - t) / calls * 1e6
    print(f"score_candidates C={a.candidates}: {hot:.1f} us/call (same ids, rows cached), "
          f"{cold:.1f} us/call (fresh random ids each call)")


if __name__ == "__main__":
    main()
