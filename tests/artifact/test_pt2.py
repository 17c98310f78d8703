"""model.pt2 (torch.export) against model.ts: the same top-k from the same inputs."""
import json

import numpy as np
import pytest
import torch

from rankers.artifact.pt2 import Pt2Recommender
from rankers.artifact.schema import PT2_K
from rankers.artifact.testing import random_export

REQUESTS = [
    ("u0", {}, []),                                                  # known user: stored bag + history
    ("u7", {"country": ["FR"]}, ["i3", "i4"]),                       # one field replaced, exclusions
    ("u9", {"history": ["i1", "i2", "unknown-item"]}, []),          # history replaced
    ("someone-new", {"segment": ["premium"], "age": ["61.5"]}, []),  # cold start from features
    ("someone-new", {"country": ["nowhere"]}, []),                   # unknown value -> OOV token
    ("someone-new", {}, []),                                         # generic ranking
]


@pytest.mark.parametrize("user, features, exclude", REQUESTS)
def test_pt2_top_k_is_identical_to_model_ts(exports, user, features, exclude):
    ts = torch.jit.load(str(exports["a"] / "model.ts"))
    pt2 = Pt2Recommender(exports["a"])
    k = 20
    ids_ts, scores_ts = ts.recommend(user, features, k, exclude)
    ids_pt, scores_pt = pt2.recommend(user, features, k, exclude)
    assert ids_pt == ids_ts
    np.testing.assert_allclose(scores_pt, scores_ts, rtol=1e-5, atol=1e-6)


def test_pt2_matches_with_mlp_towers(tmp_path):
    d = random_export(tmp_path / "mlp", n_items=200, n_users=30, dim=16, seed=3,
                      net_hparams={"user_mlp": [24], "item_mlp": [8]})
    ts, pt2 = torch.jit.load(str(d / "model.ts")), Pt2Recommender(d)
    for user, features, exclude in REQUESTS:
        ids_ts, scores_ts = ts.recommend(user, features, 15, exclude)
        ids_pt, scores_pt = pt2.recommend(user, features, 15, exclude)
        assert ids_pt == ids_ts
        np.testing.assert_allclose(scores_pt, scores_ts, rtol=1e-5, atol=1e-6)


def test_program_is_plain_tensors_in_tensors_out(exports):
    meta = json.loads((exports["a"] / "metadata.json").read_text())
    assert meta["pt2"]["file"] == "model.pt2" and meta["pt2"]["k"] == PT2_K
    program = torch.export.load(str(exports["a"] / "model.pt2")).module()
    # a batch of two users, bags of different lengths padded with 0
    tokens = torch.tensor([[1, 5, 0], [2, 0, 0]])
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    history = torch.tensor([[3, 4], [0, 0]])
    hw = (history > 0).to(torch.float32)
    scores, idx = program(tokens, weights, history, hw)
    assert scores.shape == (2, PT2_K) and idx.dtype == torch.int64
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    ts = torch.jit.load(str(exports["a"] / "model.ts"))
    full = ts(tokens, weights, history, hw)  # forward: [B, N] scores over the catalogue
    assert torch.equal(idx, torch.topk(full, PT2_K).indices)


def test_k_beyond_the_baked_k_is_refused(exports):
    pt2 = Pt2Recommender(exports["a"])
    with pytest.raises(ValueError, match="exported with k=100"):
        pt2.recommend("u0", {}, PT2_K + 1, [])
    with pytest.raises(ValueError, match="unknown user feature"):
        pt2.recommend("u0", {"shoe": ["1"]}, 5, [])


def test_export_without_pt2_and_small_catalogues(tmp_path):
    d = random_export(tmp_path / "nopt2", n_items=30, n_users=5, pt2=False)
    assert not (d / "model.pt2").exists() and json.loads((d / "metadata.json").read_text())["pt2"] is None
    small = random_export(tmp_path / "small", n_items=30, n_users=5)  # k capped at the catalogue
    pt2 = Pt2Recommender(small)
    assert pt2.k == 30 and len(pt2.recommend("u1", {}, 30, [])[0]) == 30
    with pytest.raises(FileNotFoundError, match="pt2=True"):
        Pt2Recommender(d)


def test_pt2_matches_with_the_repeat_term(tmp_path):
    d = random_export(tmp_path / "rep", n_items=200, n_users=30, dim=16, seed=4, net_hparams={"score": {"repeat": True}})
    ts, pt2 = torch.jit.load(str(d / "model.ts")), Pt2Recommender(d)
    assert float(ts.scorer.repeat) == pytest.approx(-0.3)
    for user, features, exclude in REQUESTS:
        ids_ts, scores_ts = ts.recommend(user, features, 15, exclude)
        ids_pt, scores_pt = pt2.recommend(user, features, 15, exclude)
        assert ids_pt == ids_ts
        np.testing.assert_allclose(scores_pt, scores_ts, rtol=1e-5, atol=1e-6)
