"""Benchmark rankers.retrieval (the C++ core) against brute-force baselines and memory/GEMM floors.

    python benchmarks/scoring.py --n 1000000 --d 64 --k 100 --threads 2 --batches 1,16,256

Prints median milliseconds per call for each batch size B, with ratios to the two
floors: one read of the items (X.sum()) and the score matrix alone (q @ X.T).
"rankers.retrieval.topk bf16 (factor F)" rows scan a bfloat16 copy of the items
and re-score k * F candidates exactly; their last column is recall@k against
the exact result. At B=1 the "tiled" rows run the packed-tile scan (explicit
item_tile) that a single query otherwise skips, for comparison in the same run.
Then score_candidates microseconds per call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rankers import retrieval as scoring


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, thread start, caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


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
    print(f"{'B':>5} {'method':<42} {'ms':>10} {'x scan':>8} {'x gemm':>8} {'recall':>8}")
    for B in [int(b) for b in a.batches.split(",")]:
        q = rng.standard_normal((B, a.d), dtype=np.float32)
        qt = torch.from_numpy(q)
        scan = median_ms(lambda: Xt.sum(), a.repeats)
        gemm = median_ms(lambda: qt @ Xt.T, a.repeats)
        rows = [
            ("floor: X.sum()", scan),
            ("floor: q @ X.T", gemm),
            ("rankers.retrieval.topk", median_ms(lambda: scoring.topk(q, X, a.k, num_threads=a.threads), a.repeats)),
            ("torch.topk(q @ X.T)", median_ms(lambda: torch.topk(qt @ Xt.T, a.k), a.repeats)),
            ("numpy argpartition", median_ms(lambda: numpy_topk(q, X, a.k), a.repeats)),
        ]
        if B == 1:  # the packed-tile scan that one query skips since it reads rows directly
            rows.insert(3, ("rankers.retrieval.topk tiled", median_ms(
                lambda: scoring.topk(q, X, a.k, num_threads=a.threads, item_tile=16 * 1024 // (4 * a.d)), a.repeats)))
        if index is not None:
            rows.append(("faiss IndexFlatIP", median_ms(lambda: index.search(q, a.k), a.repeats)))
        _, exact = scoring.topk(q, X, a.k, num_threads=a.threads)
        for f in factors:
            run = lambda: scoring.topk(q, X, a.k, num_threads=a.threads, approx=Xb, approx_factor=f)  # noqa: E731
            _, got = run()
            recall = np.mean([np.intersect1d(e, g).size / a.k for e, g in zip(exact, got)])
            rows.append((f"rankers.retrieval.topk bf16 (factor {f})", median_ms(run, a.repeats), recall))
            if B == 1:
                tiled = lambda: scoring.topk(  # noqa: E731
                    q, X, a.k, num_threads=a.threads, approx=Xb, approx_factor=f, item_tile=16 * 1024 // (4 * a.d))
                rows.append((f"rankers.retrieval.topk bf16 tiled (factor {f})", median_ms(tiled, a.repeats), recall))
        for name, ms, *rec in rows:
            r = f"{rec[0]:>8.3f}" if rec else ""
            print(f"{B:>5} {name:<42} {ms:>10.2f} {ms / scan:>8.2f} {ms / gemm:>8.2f} {r}")

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
