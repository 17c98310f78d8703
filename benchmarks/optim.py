"""The optimizer step of a sparse embedding table: torch.optim.Adagrad against rankers'.

    python benchmarks/optim.py --rows 200000 --dim 64 --entries 60000

One step of each on the same row-sparse gradient (``entries`` lookups of a [rows, dim] table,
rows repeating as a batch's history bags make them), timed in alternating rounds so a drift of
the machine's speed meets both alike; prints p50/p99 milliseconds and the ratio. The defaults
are one batch of ``experiment=shop`` at 200,000 items (512 rows × ~100 history items plus
2,048 shared negatives). Each step is applied in place, so both tables keep moving like a run's.
"""
from __future__ import annotations

import argparse

import torch

from load import time_interleaved  # benchmarks/load.py, beside this script
from rankers.training.optim import Adagrad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--entries", type=int, default=60_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(a.seed)
    idx = torch.randint(0, a.rows, (a.entries,), generator=g)
    steps = {}
    for name, cls in [("torch.optim.Adagrad", torch.optim.Adagrad), ("rankers.training.optim.Adagrad", Adagrad)]:
        table = torch.nn.Embedding(a.rows, a.dim, sparse=True)
        opt = cls(table.parameters(), lr=0.05)
        table(idx).sum().backward()  # the gradient stays; each call applies it again
        steps[name] = opt.step
    res = time_interleaved(steps, calls=a.calls, warmup=5)
    print(f"Adagrad step, sparse gradient: {a.entries:,} entries into a {a.rows:,} x {a.dim} table, "
          f"{a.threads} threads, {a.calls} calls each, alternating")
    base = res["torch.optim.Adagrad"]["p50_ms"]
    for name, r in res.items():
        print(f"  {name:32s} p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   {base / r['p50_ms']:5.1f}x")


if __name__ == "__main__":
    main()
