"""Benchmark drivers, run from a source checkout: ``python -m benchmarks.<name> --help``.

    quality.py   MovieLens-100k quality beside the peers (../shared/bench protocol)
    serving.py   model.ts latency in-process and over HTTP with a hot swap
    scoring.py   the C++ top-k core against brute-force peers and memory/GEMM floors
    load.py      their tools: interleaved timing, CPU monitor, the service in a child
                 process and an open-loop HTTP load generator

Not part of the installed package: they work with ``pip install .`` as with ``-e``, and find
the checkout's ``configs/`` and ``scripts/`` beside themselves; data comes in as arguments.
"""
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent  # the source checkout these drivers live in
