"""Serving exported models over HTTP.

    config.py     ServeSettings: the service's settings and their defaults (rankers/conf/serve.yaml's schema)
    model.py      load + validate an export, ModelSlot (hot swap), Watcher thread, repoint (deploy)
    worker.py     a model in its own process (swaps never stall the service)
    app.py        the FastAPI service (create_app, serve); needs the ``serve`` extra
    ab.py         sticky A/B assignment by a hash of the user id
    events.py     feedback events -> a CSV log the training data reader accepts
    metrics.py    Prometheus metrics

The service loads what ``rankers.artifact`` writes and imports only its schema: no training
code, no pandas. Nothing is imported here.
"""
