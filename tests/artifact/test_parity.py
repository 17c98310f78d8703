"""One tokenizer, one score: the same users through the training encoder, model.ts and model.pt2
give identical tokens, identical weights, identical history bags and identical top-k.

The users are those a shop sends: known (stored bag), cold (features only), with a history
override, with an empty field, with a multi-valued field, with a numeric field; the model has
every score term on (the repeat term and the popularity prior).
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rankers.artifact.pt2 import Pt2Recommender
from rankers.artifact.testing import RANDOM_NET
from rankers.artifact.writer import export
from rankers.data.features import encode_entities, validate_table
from rankers.data.files import FileSource
from rankers.model import Tokenizer, TwoTower, UserInputs
from rankers.training.train import bundle_from_data
from tests.conftest import prep

USER_FEATURES = [{"name": "country", "kind": "categorical"}, {"name": "interests", "kind": "multi"},
                 {"name": "age", "kind": "numeric", "buckets": 4}]


def _files(d: Path, n_users=80, n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{i}", int(rng.integers(1, 6)), t)
            for t, (u, i) in enumerate(zip(rng.integers(0, n_users, 1500), rng.integers(0, n_items, 1500)))]
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).drop_duplicates(["user_id", "item_id"])
    log.iloc[: len(log) * 4 // 5].to_csv(d / "train.csv", index=False)
    log.iloc[len(log) * 4 // 5:].to_csv(d / "test.csv", index=False)
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)],
                          "country": rng.choice(["DE", "FR", "IT", ""], n_users),  # "" is no value
                          "interests": ["|".join(rng.choice(["run", "hike", "swim", "yoga"], rng.integers(0, 3),
                                                            replace=False)) for _ in range(n_users)],
                          "age": rng.integers(18, 70, n_users)})
    users.to_csv(d / "users.csv", index=False)
    pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                  "brand": rng.choice(["a", "b", "c"], n_items)}).to_csv(d / "items.csv", index=False)
    return users


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    users = _files(d)
    raw = FileSource(str(d / "train.csv"), str(d / "test.csv"), str(d / "items.csv"), str(d / "users.csv"),
                     ["brand"], USER_FEATURES, rating_scale=[1, 5]).load()
    data = prep(raw, 4.0)
    torch.manual_seed(0)
    net = TwoTower(data.user_vocab.n_tokens, data.item_vocab.n_tokens, data.n_items, dim=16,
                   **{**RANDOM_NET, "user_mlp": [8], "score": {"repeat": True, "popularity_prior": True}},
                   item_popularity=data.popularity_fit).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # every part moves the scores
    out = export(net, bundle_from_data(data), d / "export")
    return {"data": data, "net": net, "users": users, "ts": torch.jit.load(str(out / "model.ts")),
            "pt2": Pt2Recommender(out)}


def training_inputs(world, user_id, features):
    """What the training encoder makes of this user: its table row (with ``features`` replacing
    fields) through encode_entities, its history from the training log (or the override)."""
    data, table = world["data"], world["users"]
    row = table[table.user_id == user_id]
    row = row.copy() if len(row) else pd.DataFrame({"user_id": [user_id], "country": [""], "interests": [""],
                                                    "age": [np.nan]})
    given = {k: v for k, v in features.items() if k != "history"}
    for name, values in given.items():
        row[name] = values[0]
    known = user_id in set(data.user_ids[:data.n_train_users])
    present = ["country", "interests", "age"] if known else list(given)
    specs = [s for s in data.user_vocab.specs if s.name in present]
    t = validate_table(row[["user_id"] + present], "user_id", specs, "request")
    tok = Tokenizer(data.user_vocab)
    if not known:  # an unknown user has only the fields it sends: encode those
        tok = Tokenizer(type(data.user_vocab)(**{**data.user_vocab.__dict__, "specs": specs}))
    tokens, weights = encode_entities(tok, [user_id], t)
    if "history" in features:
        ix = {s: i for i, s in enumerate(data.item_ids)}
        history = [ix[i] + 1 for i in dict.fromkeys(features["history"]) if i in ix]  # a set, in order
    elif known:
        history = data.history_full.row(list(data.user_ids).index(user_id)).tolist()
    else:
        history = []
    keep = tokens[0] > 0
    return tokens[0][keep].tolist(), weights[0][keep].tolist(), [h for h in history if h > 0]


CASES = [
    ("u3", {}),                                               # known: the stored bag
    ("u5", {"country": ["FR"]}),                              # known, one field replaced
    ("u6", {"interests": ["swim|yoga"]}),                     # known, a multi-valued field replaced
    ("u8", {"country": [""]}),                                # known, a field emptied: no token
    ("u9", {"history": ["i1", "i2", "i2", "nope"]}),          # known, history replaced (repeats once)
    ("cold-1", {"country": ["DE"], "interests": ["run|hike"], "age": ["44"]}),  # cold start
    ("cold-2", {"interests": ["|run||"], "age": ["17.5"]}),   # empty parts, a value below the range
    ("cold-3", {"country": ["nowhere"]}),                     # an unknown value: the OOV token
]


@pytest.mark.parametrize("user_id, features", CASES)
def test_training_encoder_model_ts_and_model_pt2_agree(world, user_id, features):
    want_t, want_w, want_h = training_inputs(world, user_id, features)
    ts_t, ts_w, ts_h = world["ts"].user_inputs(user_id, features)
    pt_t, pt_w, pt_h, _ = world["pt2"].encode(user_id, features)
    assert ts_t.tolist() == want_t and pt_t[0].tolist() == want_t
    assert ts_w.tolist() == want_w and pt_w[0].tolist() == want_w  # float32, bit for bit
    assert [h for h in ts_h.tolist() if h > 0] == want_h and [h for h in pt_h[0].tolist() if h > 0] == want_h

    # identical top-k: model.ts, model.pt2 and the trained module on the training encoder's inputs
    k, exclude = 12, ["i0", "i7"]
    ids_ts, scores_ts = world["ts"].recommend(user_id, features, k, exclude)
    ids_pt, scores_pt = world["pt2"].recommend(user_id, features, k, exclude)
    data, net = world["data"], world["net"]
    h = torch.tensor([want_h or [0]])
    users = UserInputs(torch.tensor([want_t or [0]]), torch.tensor([want_w or [0.0]]), h, (h > 0).float())
    with torch.no_grad():
        s = net(users, torch.as_tensor(data.item_tokens), torch.as_tensor(data.item_weights),
                torch.arange(data.n_items))[0]
    s[[list(data.item_ids).index(i) for i in exclude]] = float("-inf")
    top = torch.topk(s, k)
    want_ids = [data.item_ids[i] for i in top.indices.tolist()]
    assert ids_ts == want_ids and ids_pt == want_ids
    np.testing.assert_allclose(scores_ts, top.values.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores_pt, top.values.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(world["ts"].score(user_id, features, ids_ts), scores_ts, rtol=1e-5, atol=1e-5)


def test_the_score_terms_are_on_in_this_world(world):
    scorer = world["ts"].scorer
    assert scorer.use_repeat and scorer.use_popularity and float(scorer.repeat) != 0.0
