"""A schema-driven fuzz of the HTTP API: 2,000 generated requests, each field valid, of the
wrong type, hostile (NaN, 1e400, lone surrogates, control characters, formulas, huge numbers)
or missing, plus extra fields and broken JSON; no answer may be a server error."""
import json
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from rankers.serving.app import ServeSettings, create_app
from tests.conftest import N_ITEMS

N_REQUESTS = 2000
HOSTILE_TEXT = ["\ud800", "\udfff", "a\x00b", "\n", "\r\n", "=1+1", "@SUM(A1)", "-cmd", " ", "", "u1 ", "NaN",
                "0x1e", " 30 ", "30_000", "\uff11\uff12", "x" * 600, "\u202e", "é", "i1"]
HOSTILE_NUMBERS = [float("nan"), float("inf"), -float("inf"), 1e400, -0.0, 2 ** 63, -2 ** 63 - 1, 10 ** 30, 1e-320,
                   0, 1, 5, N_ITEMS, N_ITEMS + 1, 3.5, True]

scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(HOSTILE_TEXT) | st.sampled_from(HOSTILE_NUMBERS))
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                        max_leaves=8)
def mostly(valid, hostile):
    """``valid`` three times in four: the fuzz must also get past validation into the model."""
    return st.integers(0, 3).flatmap(lambda i: valid if i else hostile)


ids = mostly(st.sampled_from(["u1", "u3", "new", "i1", "i7", " i2 "]), st.sampled_from(HOSTILE_TEXT) | anything)
id_lists = mostly(st.lists(ids, max_size=5), anything)
values = mostly(st.lists(st.sampled_from(["DE", "FR", "34", "i1", "i2"]) | scalars, max_size=3), anything)
features = mostly(st.dictionaries(mostly(st.sampled_from(["country", "age", "history"]),
                                         st.sampled_from(["shoe"] + HOSTILE_TEXT)), values, max_size=3), anything)
FIELDS = {
    "/recommend": {"user_id": ids, "features": features,
                   "k": mostly(st.integers(1, N_ITEMS), st.sampled_from(HOSTILE_NUMBERS) | anything),
                   "exclude": id_lists},
    "/score": {"user_id": ids, "features": features, "items": id_lists},
    "/events": {"user_id": ids, "item_id": ids,
                "event": mostly(st.sampled_from(["view", "cart", "purchase"]), anything),
                "variant": mostly(st.just("champion"), st.sampled_from(["challenger"]) | anything),
                "timestamp": mostly(st.floats(0, 2e9), st.sampled_from(HOSTILE_NUMBERS) | anything),
                "model_version": ids},
}


@st.composite
def requests(draw):
    path = draw(st.sampled_from(sorted(FIELDS)))
    body = {name: draw(strategy) for name, strategy in FIELDS[path].items() if draw(st.integers(0, 4))}
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=6))] = draw(anything)  # a field the schema does not know
    raw = json.dumps(body if draw(st.integers(0, 19)) else draw(anything), allow_nan=True).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]  # cut short: broken JSON
    return path, raw


@pytest.fixture(scope="module")
def client(exports, tmp_path_factory):
    events = tmp_path_factory.mktemp("fuzz") / "events.csv"
    app = create_app(ServeSettings(model_path=str(exports["a"]), events_path=str(events),
                                   impressions_path=str(events.with_name("impressions.jsonl")), watch=False,
                                   isolation="thread"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(client):
    seen = {"n": 0, "codes": {}}

    @settings(max_examples=N_REQUESTS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    def one(req):
        path, raw = req
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        seen["n"] += 1
        seen["codes"][r.status_code] = seen["codes"].get(r.status_code, 0) + 1
        assert r.status_code < 500, (path, raw[:300], r.status_code, r.text[:300])
        r.json()  # every answer is JSON

    one()
    assert seen["n"] >= N_REQUESTS, seen
    # the fuzz reached past validation, not only its 4xx: a share of the requests were served
    assert seen["codes"].get(200, 0) > 100 and seen["codes"].get(422, 0) > 200, seen["codes"]
