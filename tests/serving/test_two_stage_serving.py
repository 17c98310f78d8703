"""A two-stage export (two-tower retrieval, ElasticRank reranking) behind the service: /recommend
and /score load it as they load a two-tower export, /rerank orders a widget's candidates, in
this process and in a worker process."""
import json

import numpy as np
import pytest
import torch

from rankers.artifact.testing import random_export
from rankers.artifact.two_stage import RETRIEVAL, export_two_stage, load_retriever, retrieval_scores
from rankers.data.synthetic import World
from rankers.data.synthetic_lists import ITEM_COLUMNS, impression_table, item_frame, shop_encoding
from rankers.serving.worker import start_worker

PAIRS = {"price_vs_usual": ["0.4", "-1.2", "0.1"], "category_affinity": ["0.3", "0", "0.1"]}


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_stage_serving")
    retriever = random_export(root / "retriever", n_items=150, n_users=400, seed=3, pt2=False)
    world = World(400, 150, 20, seed=0)
    df = impression_table(world, 50, seed=1)
    df[RETRIEVAL] = retrieval_scores(load_retriever(retriever), df["user_id"], df["item_id"])
    enc = shop_encoding(world, 64, retrieval=True)
    weight = torch.randn(enc.n_features, generator=torch.Generator().manual_seed(0))
    return export_two_stage(root / "two", retriever, enc, weight, True, item_frame(world), ITEM_COLUMNS, 30,
                            RETRIEVAL), retriever


def test_the_service_serves_a_two_stage_export(client_factory, two_stage, tmp_path):
    export, retriever = two_stage
    m = torch.jit.load(str(export / "model.ts"))
    c = client_factory(model_path=str(export))
    r = c.post("/recommend", json={"user_id": "u7", "k": 5})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == m.recommend("u7", {}, 5, [])[0]
    body = {"user_id": "u7", "features": {"segment": ["premium"]}, "candidates": ["i3", "i40", "i77"],
            "candidate_features": {"price_vs_usual": [0.4, -1.2, 0.1], "category_affinity": ["0.3", "0", "0.1"]}}
    r = c.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    ids, scores = m.rerank("u7", {"segment": ["premium"]}, ["i3", "i40", "i77"], PAIRS)
    assert r.json()["items"] == ids and np.allclose(r.json()["scores"], scores, atol=1e-5)
    shown = r.json()["request_id"]
    bad = c.post("/rerank", json={**body, "candidate_features": {"price_vs_usual": ["1"]}})
    assert bad.status_code == 422 and "has 1 values for 3 candidates" in bad.json()["detail"]
    assert c.post("/rerank", json={**body, "candidates": []}).status_code == 422
    assert c.get("/health").status_code == 200
    c.__exit__(None, None, None)  # the impression log is written on close
    lines = [json.loads(x) for x in (tmp_path / "impressions.jsonl").read_text().splitlines()]
    assert any(x.get("request_id") == shown and x.get("items") == ids for x in lines)


def test_rerank_on_a_two_tower_export_orders_by_its_scores(client):
    r = client.post("/rerank", json={"user_id": "u3", "candidates": ["i1", "i2", "i9"]})
    assert r.status_code == 200, r.text
    scores = client.post("/score", json={"user_id": "u3", "items": r.json()["items"]}).json()["scores"]
    assert r.json()["scores"] == pytest.approx(scores) and scores == sorted(scores, reverse=True)
    r = client.post("/rerank", json={"user_id": "u3", "candidates": ["i1"], "candidate_features": {"p": ["1"]}})
    assert r.status_code == 422 and "no candidate features" in r.json()["detail"]


def test_a_worker_process_reranks(two_stage):
    export, _ = two_stage
    w = start_worker(export)
    try:
        ids, scores = w.rerank("u7", {}, ["i3", "i40", "i77"], PAIRS)
        want = torch.jit.load(str(export / "model.ts")).rerank("u7", {}, ["i3", "i40", "i77"], PAIRS)
        assert ids == want[0] and np.allclose(scores, want[1], atol=1e-5)
    finally:
        w.close()
