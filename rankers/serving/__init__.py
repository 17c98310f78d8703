"""Serving exported models.

    model.py      load + validate an export, ModelSlot (hot swap), Watcher thread
    worker.py     a model in its own process (swaps never stall the service)
    app.py        the FastAPI service (create_app, serve); needs the ``serve`` extra
    ab.py         sticky A/B assignment by a hash of the user id
    events.py     feedback events -> a CSV log the training data reader accepts
    metrics.py    Prometheus metrics
    pt2.py        reference caller of model.pt2 (torch.export) via lookups.json
    cpp.py        build the C++ loader in csrc/serving with CMake
    bench.py      in-process and HTTP latency benchmarks (scripts/bench_serving.py)
    synthetic.py  random-weight exports of any size, for tests and benchmarks

Nothing is imported here, so ``rankers.serving.pt2`` works without FastAPI installed.
"""
