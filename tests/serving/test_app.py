"""The REST endpoints through FastAPI's TestClient (no sockets)."""
import json

import numpy as np
import pytest
import torch

from rankers.data.log import DEFAULT_GRADES, read_table, validate_log
from rankers.serving.ab import CHALLENGER, CHAMPION, assign_variant
from rankers.serving.app import ServeSettings, create_app
from rankers.serving.model import repoint
from tests.conftest import N_ITEMS, version_of


def test_recommend_matches_the_exported_model(client, exports):
    m = torch.jit.load(str(exports["a"] / "model.ts"))
    r = client.post("/recommend", json={"user_id": "u3", "k": 7, "exclude": ["i1", "not-an-item"]})
    assert r.status_code == 200, r.text
    body = r.json()
    ids, scores = m.recommend("u3", {}, 7, ["i1", "not-an-item"])
    assert body["items"] == ids and np.allclose(body["scores"], scores, atol=1e-5)
    assert body["model_version"] == version_of(exports["a"]) and body["variant"] == CHAMPION
    assert body["fallback"] is None and "i1" not in body["items"]


def test_cold_start_features_and_numeric_values(client, exports):
    m = torch.jit.load(str(exports["a"] / "model.ts"))
    feats = {"country": ["DE"], "age": [34]}  # numbers are accepted for numeric features
    r = client.post("/recommend", json={"user_id": "brand-new", "features": feats, "k": 5})
    assert r.status_code == 200 and r.json()["fallback"] is None
    assert r.json()["items"] == m.recommend("brand-new", {"country": ["DE"], "age": ["34"]}, 5, [])[0]
    anon = client.post("/recommend", json={"features": {"history": ["i1", "i2"]}, "k": 5})
    assert anon.status_code == 200 and anon.json()["fallback"] is None


def test_unknown_user_without_features_gets_the_anonymous_ranking_flagged(client_factory, exports):
    c = client_factory()
    m = torch.jit.load(str(exports["a"] / "model.ts"))
    for body in ({"user_id": "nobody", "k": 4}, {"k": 4}, {"user_id": "nobody", "features": {"country": []}, "k": 4}):
        r = c.post("/recommend", json=body)
        assert r.status_code == 200 and r.json()["fallback"] == "anonymous", r.text
        assert r.json()["items"] == m.recommend("", {}, 4, [])[0]  # what the model gives a user it knows nothing of
    strict = client_factory(anonymous_fallback=False)
    r = strict.post("/recommend", json={"user_id": "nobody", "k": 4})
    assert r.status_code == 422 and "no features" in r.json()["detail"]
    assert strict.post("/recommend", json={"user_id": "u1", "k": 4}).status_code == 200


@pytest.mark.parametrize("body, status, needle", [
    ({"user_id": "u1", "k": 0}, 422, "greater than or equal to 1"),
    ({"user_id": "u1", "k": N_ITEMS + 1}, 422, "above the catalogue size"),
    ({"user_id": "u1", "k": "5"}, 422, "valid integer"),
    ({"user_id": "u1", "k": 5.0}, 422, "valid integer"),
    ({"user_id": "u1"}, 422, "Field required"),
    ({"user_id": "u1", "k": 5, "colour": "red"}, 422, "Extra inputs are not permitted"),
    ({"user_id": 7, "k": 5}, 422, "valid string"),
    ({"user_id": "u1", "k": 5, "exclude": "i1"}, 422, "valid list"),
    ({"user_id": "u1", "k": 5, "features": {"shoe_size": ["42"]}}, 422, "unknown user feature 'shoe_size'"),
    ({"user_id": "u1", "k": 5, "features": {"age": ["old"]}}, 422, "numeric feature 'age' got 'old', which is not a number"),
    ({"user_id": "u1", "k": 5, "features": {"age": [1e301]}}, 422, "numeric feature 'age' got '1e+301', which is out of range"),
    ({"user_id": "u1", "k": 5, "features": {"country": "DE"}}, 422, "valid list"),
    ({"user_id": "bad\nid", "k": 5}, 422, "pattern"),
    ([1, 2], 422, "valid dictionary"),
])
def test_bad_requests_get_4xx_with_a_message(client, body, status, needle):
    r = client.post("/recommend", json=body)
    assert r.status_code == status and needle in r.text, r.text


@pytest.mark.parametrize("raw, field, needle", [
    # JSON that Python's parser reads as NaN, inf or a lone surrogate: the error echoed the input
    # and could not be written as JSON (a 500)
    ('{"user_id": "u1", "k": NaN}', "k", "valid integer"),
    ('{"user_id": "u1", "k": 1e400}', "k", "valid integer"),
    ('{"user_id": "\\ud800", "k": 3}', "user_id", "lone surrogate"),
    ('{"user_id": "u1", "k": 3, "exclude": ["i1", "\\udfff"]}', "exclude", "lone surrogate"),
    ('{"user_id": "u1", "k": 3, "features": {"\\ud800": ["x"]}}', "features", "lone surrogate"),
    ('{"user_id": "u1", "k": 3, "features": {"age": [NaN]}}', "features", "finite number"),
    ('{"user_id": "u1", "k": 3, "features": {"age": [-Infinity]}}', "features", "finite number"),
])
def test_non_finite_numbers_and_lone_surrogates_are_422_naming_the_field(client, raw, field, needle):
    r = client.post("/recommend", content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"][1] == field for e in errors) and needle in r.text, r.text
    assert all("input" not in e for e in errors)  # never echoed


@pytest.mark.parametrize("value", [" 30 ", "30_000", "\uff11\uff12", "0x1e", "nan", "inf", "1e999"])
def test_numeric_features_are_parsed_strictly(client, value):
    r = client.post("/recommend", json={"user_id": "u1", "k": 3, "features": {"age": [value]}})
    assert r.status_code == 422 and f"numeric feature 'age' got '{value}'" in r.json()["detail"], r.text


def test_a_body_over_max_body_bytes_is_413_unread_and_unechoed(client_factory):
    c = client_factory(max_body_bytes=64 << 10)
    big = json.dumps({"user_id": "u1", "k": 3, "exclude": ["x" * 500] * 200}).encode()  # ~100 KB
    r = c.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"] and len(r.content) < 200
    # no Content-Length (chunked): counted as it streams in
    r = c.post("/recommend", content=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]),
               headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    small = json.dumps({"user_id": "u1", "k": 3, "exclude": ["x" * 500] * 20}).encode()
    assert c.post("/recommend", content=small, headers={"content-type": "application/json"}).status_code == 200
    assert 'status="413"' in c.get("/metrics").text
    # a 20 MB body used to come back whole in a 422
    huge = c.post("/recommend", content=b'{"k": "' + b"x" * (20 << 20) + b'"}', headers={"content-type": "application/json"})
    assert huge.status_code == 413 and len(huge.content) < 200


def test_ids_are_looked_up_without_surrounding_blanks_as_the_readers_store_them(client):
    a = client.post("/recommend", json={"user_id": " u3 ", "k": 5, "exclude": [" i1"]}).json()
    b = client.post("/recommend", json={"user_id": "u3", "k": 5, "exclude": ["i1"]}).json()
    assert a["items"] == b["items"] and a["fallback"] is None and "i1" not in a["items"]
    assert client.post("/recommend", json={"user_id": "   ", "k": 5}).status_code == 422


def test_malformed_json_is_400(client):
    r = client.post("/recommend", content=b'{"user_id": "u1", "k": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]


def test_score_endpoint(client, exports):
    m = torch.jit.load(str(exports["a"] / "model.ts"))
    r = client.post("/score", json={"user_id": "u2", "items": ["i5", "i9"]})
    assert r.status_code == 200 and np.allclose(r.json()["scores"], m.score("u2", {}, ["i5", "i9"]), atol=1e-5)
    assert r.json()["model_version"] == version_of(exports["a"])
    bad = client.post("/score", json={"user_id": "u2", "items": ["i5", "zzz"]})
    assert bad.status_code == 422 and bad.json()["detail"] == "unknown item id 'zzz'"
    assert client.post("/score", json={"user_id": "u2", "items": []}).status_code == 422
    assert client.post("/score", json={"user_id": "u2"}).status_code == 422


def test_health_model_and_metrics(client, exports):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["variants"][CHAMPION]["version"] == version_of(exports["a"])
    info = client.get("/model").json()
    assert info["version"] == version_of(exports["a"]) and info["created"] and "metrics" in info
    assert info["challenger"] is None and info["n_items"] == N_ITEMS
    client.post("/recommend", json={"user_id": "u1", "k": 3})
    client.post("/recommend", json={"user_id": "u1", "k": 0})
    text = client.get("/metrics").text
    assert 'rankers_requests_total{endpoint="/recommend",status="200",variant="champion"} 1.0' in text
    assert 'rankers_requests_total{endpoint="/recommend",status="422",variant="none"} 1.0' in text
    assert 'rankers_request_latency_seconds_bucket{endpoint="/recommend",le="0.01",variant="champion"}' in text
    assert f'rankers_model_info{{variant="champion",version="{version_of(exports["a"])}"}} 1.0' in text
    assert client.get("/docs").status_code == 200 and "/recommend" in client.get("/openapi.json").json()["paths"]


def test_ab_split_is_sticky_and_counted_per_variant(client_factory, exports):
    c = client_factory(challenger_path=str(exports["b"]), challenger_share=0.5)
    users = [f"u{i}" for i in range(40)]
    first = {u: c.post("/recommend", json={"user_id": u, "k": 3}).json() for u in users}
    again = {u: c.post("/recommend", json={"user_id": u, "k": 3}).json()["variant"] for u in users}
    assert {u: b["variant"] for u, b in first.items()} == again
    versions = {CHAMPION: version_of(exports["a"]), CHALLENGER: version_of(exports["b"])}
    for u, b in first.items():
        assert b["variant"] == assign_variant(u, 0.5) and b["model_version"] == versions[b["variant"]]
    n_ch = sum(v == CHALLENGER for v in again.values())
    assert 0 < n_ch < len(users)
    text = c.get("/metrics").text
    assert f'endpoint="/recommend",status="200",variant="challenger"}} {2.0 * n_ch}' in text
    assert c.get("/model").json()["challenger"]["version"] == versions[CHALLENGER]


def test_events_append_a_log_the_training_reader_accepts(client_factory, tmp_path):
    c = client_factory(challenger_path=None)
    assert c.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "view"}).status_code == 200
    r = c.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "purchase", "variant": "champion",
                                "timestamp": 1700000000})
    assert r.status_code == 200 and r.json()["variant"] == "champion"
    assert c.post("/events", json={"user_id": "u1, \"quoted\"", "item_id": "i4", "event": "cart"}).status_code == 200
    assert c.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "like"}).status_code == 422
    assert c.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "view",
                                   "variant": "challenger"}).status_code == 422  # no challenger served
    df = read_table(tmp_path / "events.csv")
    log = validate_log(df, "events.csv", grades=DEFAULT_GRADES)
    assert list(log["user_id"]) == ["u1", "u1", 'u1, "quoted"'] and list(log["grade"]) == [1.0, 3.0, 2.0]
    assert log["timestamp"].iloc[1] == 1700000000 and list(df["variant"]) == ["champion"] * 3
    assert 'rankers_feedback_events_total{event="purchase",variant="champion"} 1.0' in c.get("/metrics").text
    # a control character would split a line; a spreadsheet runs a cell starting with = @ + -
    for bad in ({"model_version": "v1\nu9,i9,purchase"}, {"model_version": "v\r1"}, {"model_version": "v\x001"},
                {"user_id": "=HYPERLINK(\"http://x\")"}, {"item_id": "@SUM(A1)"}, {"user_id": "+cmd|' /C calc'!A0"},
                {"item_id": "-2+3"[0:1] + "A1"}, {"model_version": "=1+1"}):
        r = c.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "view", **bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][1] in bad, (bad, r.text)
    for fine in ("-1", "+4930", "-.5", "a=b"):  # numbers and inner signs stay ids
        assert c.post("/events", json={"user_id": fine, "item_id": "i3", "event": "view"}).status_code == 200
    assert len(read_table(tmp_path / "events.csv")) == 3 + 4
    # a directory as the event log: refused at startup, and a 503 (not a bare 500) if it becomes one later
    with pytest.raises(ValueError, match=r"events_path .* is a directory"):
        create_app(ServeSettings(model_path=str(tmp_path / "nothing"), events_path=str(tmp_path),
                                 impressions_path=None, watch=False, isolation="thread"))
    (tmp_path / "events.csv").unlink()
    (tmp_path / "events.csv").mkdir()
    r = c.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "view"})
    assert r.status_code == 503 and "cannot be written" in r.json()["detail"]
    off = client_factory(events_path=None)
    assert off.post("/events", json={"user_id": "u1", "item_id": "i3", "event": "view"}).status_code == 503


def test_models_in_worker_processes_serve_and_swap(client_factory, exports, tmp_path):
    link = tmp_path / "current"
    repoint(link, exports["a"])
    c = client_factory(isolation="process", model_path=str(link), challenger_path=str(exports["b"]),
                       challenger_share=0.5)
    svc = c.app.state.service
    body = {"user_id": "u3", "k": 5, "exclude": ["i1"]}
    variant = assign_variant("u3", 0.5)
    ref = torch.jit.load(str(exports["a" if variant == CHAMPION else "b"] / "model.ts")).recommend("u3", {}, 5, ["i1"])
    r = c.post("/recommend", json=body).json()
    assert r["items"] == ref[0] and np.allclose(r["scores"], ref[1], atol=1e-5) and r["variant"] == variant
    bad = c.post("/score", json={"user_id": "u3", "items": ["nope"]})
    assert bad.status_code == 422 and bad.json()["detail"] == "unknown item id 'nope'"
    old = svc.slots[CHAMPION].current
    repoint(link, exports["b"])
    assert svc.slots[CHAMPION].check() and old.alive()  # retired, closed after the grace period
    anon = c.post("/recommend", json={"k": 3}).json()
    assert anon["model_version"] == version_of(exports["b"]) and anon["fallback"] == "anonymous"
    old.close()
    assert not old.alive()


def test_bad_settings_are_refused(exports):
    with pytest.raises(ValueError, match="challenger_share"):
        ServeSettings(model_path=str(exports["a"]), challenger_share=2)
    with pytest.raises(ValueError, match="model_path"):
        ServeSettings(model_path="")
    with pytest.raises(ValueError, match="isolation"):
        ServeSettings(model_path=str(exports["a"]), isolation="fork")


def test_status_codes_follow_the_exception_type_not_its_text(client_factory, exports):
    # A model's own failure is a 500 whatever its message says; a request it refuses is a 422.
    from rankers.serving.model import RequestError, load_model

    class Faulty:
        def __init__(self, model, exc):
            self.model, self.exc = model, exc

        def __getattr__(self, name):
            return getattr(self.model, name)

        async def recommend_async(self, *args):
            raise self.exc

    for exc, status in [(RuntimeError("builtins.ValueError: looks like a request error"), 500),
                        (RequestError("k is odd"), 422)]:
        c = client_factory(watch=False)
        slot = c.app.state.service.slots[CHAMPION]
        slot.current = Faulty(load_model(str(exports["a"])), exc)
        r = c.post("/recommend", json={"user_id": "u1", "k": 3})
        assert r.status_code == status, r.text
        if status == 422:
            assert r.json()["detail"] == "k is odd"
        else:
            assert "looks like" not in r.text  # internal details stay in the log
