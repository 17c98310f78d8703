"""Serving latency: in-process recommend (model.ts) and HTTP /recommend with a hot swap.

    python benchmarks/serving.py                          # 100k items, d=64, k=100; HTTP 200 req/s x 30 s
    python benchmarks/serving.py --skip-http --calls 500
    python benchmarks/serving.py --no-http-baseline --impressions-rounds 3 --duration 15   # the impression log's cost

Builds random-weight exports (no training) in a temporary directory, then prints
p50/p99 of 2,000 in-process recommend calls for one user, beside the same model exported
with the exact float32 scan (the baseline), and the parts (user vector, catalogue scans,
top-k); then of the HTTP run against scripts/serve.py in a child process,
with the model symlink repointed to a second export halfway, and of the same run on
fp32-scan exports (the baseline; --no-http-baseline skips it). Targets from issue #4
are checked on the default exports; the exit status is 1 when one is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

import load as bench  # benchmarks/load.py, beside this script
from rankers.artifact.testing import random_export

TARGET_INPROCESS_P99_MS = 2.0
TARGET_HTTP_P99_MS = 15.0


def _cores(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _http(work: Path, exp_a: Path, exp_b: Path, a: argparse.Namespace, label: str) -> bool:
    """One HTTP run (service on exp_a, swapped to exp_b); prints its figures, returns target met."""
    h = bench.bench_http(work, exp_a, exp_b, k=a.k, rate=a.rate, duration_s=a.duration,
                         swap_at_s=a.swap_at if a.swap_at >= 0 else None, workers=a.workers,
                         num_threads=a.server_threads)
    print(f"HTTP /recommend ({label}): {h['rate']:g} req/s for {h['duration_s']:g} s on loopback, "
          f"{a.workers} client connections, model worker torch threads={a.server_threads}")
    print(f"  requests {h['requests']}  errors {h['errors']}  p50 {h['p50_ms']:.2f} ms  "
          f"p99 {h['p99_ms']:.2f} ms  max {h['max_ms']:.2f} ms")
    print(f"  CPU: server + client {_cores(h['ours_cores'])} cores, other processes {_cores(h['others_cores'])}")
    if a.swap_at >= 0:
        sw = h.get("around_swap") or {}
        print(f"  swap at {a.swap_at:g} s: answers by A {h['answered_a']}, by B {h['answered_b']}, "
              f"first B answer at {h['first_b_s'] if h['first_b_s'] is not None else float('nan'):.2f} s; "
              f"around the swap p50 {sw.get('p50_ms', float('nan')):.2f} ms "
              f"p99 {sw.get('p99_ms', float('nan')):.2f} ms (n={sw.get('n', 0)})")
    for m in h["error_messages"]:
        print(f"  error: {m}")
    ok = h["p99_ms"] <= TARGET_HTTP_P99_MS and h["errors"] == 0
    if a.swap_at >= 0:
        ok = ok and h["answered_b"] > 0
    print(f"  target HTTP p99 <= {TARGET_HTTP_P99_MS} ms, zero errors, swap served: {'met' if ok else 'MISSED'}")
    return ok


TARGET_IMPRESSIONS_P99_MS = 0.2


def _impressions(work: Path, exp_a: Path, exp_b: Path, a: argparse.Namespace) -> bool:
    """The HTTP load with the impression log off, then on, round by round; prints each run and
    the difference of the medians over rounds; returns the target met."""
    import numpy as np

    runs = {False: [], True: []}
    for r in range(a.impressions_rounds):
        for on in (False, True):
            h = bench.bench_http(work / f"imp-{r}-{int(on)}", exp_a, exp_b, k=a.k, rate=a.rate, duration_s=a.duration,
                                 swap_at_s=None, workers=a.workers, num_threads=a.server_threads, impressions=on)
            runs[on].append(h)
            print(f"  impressions {'on ' if on else 'off'} round {r}: requests {h['requests']} errors {h['errors']} "
                  f"p50 {h['p50_ms']:.3f} ms p99 {h['p99_ms']:.3f} ms")
    p50 = {on: float(np.median([h["p50_ms"] for h in hs])) for on, hs in runs.items()}
    p99 = {on: float(np.median([h["p99_ms"] for h in hs])) for on, hs in runs.items()}
    cost = p99[True] - p99[False]
    print(f"HTTP /recommend, impression log off vs on (median of {a.impressions_rounds} rounds each, alternating): "
          f"p50 {p50[False]:.3f} vs {p50[True]:.3f} ms, p99 {p99[False]:.3f} vs {p99[True]:.3f} ms; "
          f"cost at p99 {cost:+.3f} ms")
    ok = cost <= TARGET_IMPRESSIONS_P99_MS
    print(f"  target impression log <= {TARGET_IMPRESSIONS_P99_MS} ms at p99: {'met' if ok else 'MISSED'}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-items", type=int, default=100_000)
    p.add_argument("--n-users", type=int, default=1000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads in-process (default: the cores; fbgemm's fp16 scan uses them)")
    p.add_argument("--server-threads", type=int, default=1,
                   help="torch threads of the server's model worker (serve.yaml's num_threads: 1 leaves "
                        "a core to uvicorn and to loading the next model)")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--swap-at", type=float, default=15.0, help="seconds into the HTTP run; < 0: no swap")
    p.add_argument("--workers", type=int, default=8, help="client threads, one keep-alive connection each")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--http-baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the HTTP load against fp32-scan exports (the baseline; its target is not checked)")
    p.add_argument("--impressions-rounds", type=int, default=0,
                   help="also run the HTTP load this many rounds with the impression log off and on, alternating "
                        "(no swap), and print the p50/p99 of each (target: on costs <= 0.2 ms at p99)")
    p.add_argument("--workdir", default=None, help="keep exports and server log here (default: a temp dir)")
    a = p.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit in torch 2.13

    work = Path(a.workdir) if a.workdir else bench.default_workdir()
    try:
        torch.set_num_threads(a.threads)
        exp_a = random_export(work / "export-a", n_items=a.n_items, n_users=a.n_users, dim=a.dim, seed=0, pt2=False)
        # the baseline: the same model exported with the exact float32 scan
        exact = random_export(work / "export-exact", n_items=a.n_items, n_users=a.n_users, dim=a.dim, seed=0,
                              pt2=False, scan="fp32")
        scan = json.loads((exp_a / "metadata.json").read_text())["scan"]["precision"]
        print(f"catalogue {a.n_items} items, d={a.dim}, k={a.k}, torch threads={a.threads}, scan={scan}")
        r = bench.bench_inprocess(exp_a / "model.ts", "u1", k=a.k, calls=a.calls,
                                  baseline_ts=exact / "model.ts")
        for name, s in r.items():
            label = "recommend_fp32" if name == "recommend_baseline" else name
            print(f"  in-process {label:<15} n={s['n']:>5}  p50 {s['p50_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms"
                  f"  max {s['max_ms']:7.3f} ms")
        print("  (recommend_fp32: the same model exported with scan=fp32, the baseline, timed in alternation)")
        print(f"  other processes used {_cores(r['recommend']['others_cores'])} of the machine's cores meanwhile")
        ok = r["recommend"]["p99_ms"] <= TARGET_INPROCESS_P99_MS
        print(f"  target in-process p99 <= {TARGET_INPROCESS_P99_MS} ms: {'met' if ok else 'MISSED'}")
        if not a.skip_http:
            exp_b = random_export(work / "export-b", n_items=a.n_items, n_users=a.n_users, dim=a.dim, seed=1,
                                  pt2=False)
            ok = _http(work / "http", exp_a, exp_b, a, f"scan={scan}") and ok
            if a.http_baseline:
                exact_b = random_export(work / "export-exact-b", n_items=a.n_items, n_users=a.n_users, dim=a.dim,
                                        seed=1, pt2=False, scan="fp32")
                _http(work / "http-fp32", exact, exact_b, a, "scan=fp32, the baseline")
            if a.impressions_rounds:
                ok = _impressions(work, exp_a, exp_b, a) and ok
        return 0 if ok else 1
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
