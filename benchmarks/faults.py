"""Serving faults: the model process killed under load (issue 13's targets).

    python benchmarks/faults.py                     # 10 kills, 2 s apart, under 200 req/s
    python benchmarks/faults.py --kills 3 --rate 100 --every 1

Starts scripts/serve.py on a random-weight export (no training), points its symlink at a
broken export (so no replacement can come from the deployed files), then drives /recommend at
``--rate`` while a side thread kills the model's process ``--kills`` times, ``--every`` seconds apart, and
another polls /health. Prints the failed requests (target <= 1%), those due after each
replacement was up (target 0), how fast each replacement came up, and whether /health ever
said "alive" for a killed process (target never). Exit status 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import load as bench  # benchmarks/load.py, beside this script
from rankers.artifact.testing import random_export


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--every", type=float, default=2.0, help="seconds between kills")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--spare", action=argparse.BooleanOptionalAction, default=True,
                   help="serve.yaml's spare_worker (--no-spare: each dead worker is replaced by loading the export again)")
    p.add_argument("--workers", type=int, default=8, help="client threads, one keep-alive connection each")
    p.add_argument("--workdir", default=None, help="keep exports and server log here (default: a temp dir)")
    a = p.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    work = Path(a.workdir) if a.workdir else bench.default_workdir()
    try:
        export = random_export(work / "export", n_items=a.n_items, n_users=1000, dim=a.dim, seed=0, pt2=False)
        broken = work / "broken"
        shutil.copytree(export, broken)
        (broken / "model.ts").write_bytes(b"not a model")
        duration = 2.0 + a.kills * a.every + 2.0
        r = bench.bench_worker_kills(work / "run", export, broken, kills=a.kills, rate=a.rate, duration_s=duration,
                                     every_s=a.every, workers=a.workers,
                                     overrides=[f"spare_worker={str(a.spare).lower()}"])
        pct = 100.0 * r["errors"] / max(1, r["requests"])
        print(f"catalogue {a.n_items} items, d={a.dim}; {r['rate']:g} req/s for {r['duration_s']:g} s; the model's "
              f"process killed {r['kills']} times, {a.every:g} s apart; the deployed export unloadable throughout; "
              f"spare_worker={str(a.spare).lower()}")
        print(f"  requests {r['requests']}  failed {r['errors']} ({pct:.2f}%)  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.2f} ms")
        print(f"  replacement up (/health shows a new pid) after: "
              f"{', '.join(f'{s:.2f}' for s in r['replaced_within_s'])} s; revived {r['revived']}")
        print(f"  failed after a replacement was up: {r['failed_after_replacement']}")
        print(f"  /health: {r['health_samples']} samples, {r['health_degraded']} degraded (503), "
              f"{r['health_lies']} said alive for a process killed > 0.1 s before")
        for m in r["error_messages"]:
            print(f"  error: {m}")
        ok = pct <= 1.0 and r["failed_after_replacement"] == 0 and r["health_lies"] == 0 and r["revived"] == r["kills"]
        print(f"  targets (<= 1% failed, 0 after replacement, /health truthful, every kill replaced): "
              f"{'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
