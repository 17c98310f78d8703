"""Fixtures of the service's tests: TestClients over the random exports (models in this process)."""
import warnings

import pytest

with warnings.catch_warnings():  # new starlette prefers httpx2 but still works with httpx, which CI installs
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from rankers.serving.app import ServeSettings, create_app


@pytest.fixture
def client_factory(exports, tmp_path):
    clients = []

    def make(**overrides):
        settings = ServeSettings(**{"model_path": str(exports["a"]), "events_path": str(tmp_path / "events.csv"),
                                    "impressions_path": str(tmp_path / "impressions.jsonl"),
                                    "watch": False, "isolation": "thread", **overrides})
        c = TestClient(create_app(settings))
        c.__enter__()  # runs the lifespan (watcher start/stop)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(client_factory):
    return client_factory()
