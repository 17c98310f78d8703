"""Benchmark drivers, run from a source checkout by path: ``python benchmarks/<name>.py --help``.

    quality.py   MovieLens-100k quality beside the peers (../shared/bench protocol)
    serving.py   model.ts latency in-process and over HTTP with a hot swap
    faults.py    the service under load while its model process is killed again and again
    scoring.py   the C++ top-k core against brute-force peers and memory/GEMM floors
    load.py      their tools: interleaved timing, CPU monitor, the service in a child
                 process and an open-loop HTTP load generator

Not part of the installed package, and run by path rather than with ``-m``, so that the
``rankers`` they import is the installed one (``pip install .`` or ``-e``), never the source
folder beside them; they find the checkout's ``rankers/conf/`` and ``scripts/`` from their own
location, and data comes in as arguments. (A package only so that tests can import ``load``.)
"""
