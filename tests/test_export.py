"""Export writes atomically: a failure leaves the previous export as it was and no temp files."""
import json

import pytest
import torch

import rankers.export as ex
from rankers.data.dataset import prepare
from rankers.data.synthetic import SyntheticSource
from rankers.models import TwoTower


@pytest.fixture(scope="module")
def tiny():
    data = prepare(SyntheticSource(n_users=60, n_items=40, seed=2).load(), 2.0)
    torch.manual_seed(0)
    return TwoTower(**data.sizes(), dim=8), ex.bundle_from_data(data)


def test_a_failed_export_leaves_the_old_one_untouched(tiny, tmp_path, monkeypatch):
    net, bundle = tiny
    target = tmp_path / "export"
    ex.export(net, bundle, target, pt2=False)
    before = json.loads((target / "metadata.json").read_text())["version"]

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(ex, "build_recommender", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export(net, bundle, target, pt2=False)
    assert json.loads((target / "metadata.json").read_text())["version"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp dir left behind


def test_history_is_a_reserved_user_feature_name(tiny, tmp_path):
    net, bundle = tiny
    bad = dict(bundle)
    state = dict(bundle["user_encoder"])
    state["specs"] = list(state["specs"]) + [{"name": "history", "kind": "categorical", "buckets": 8, "sep": "|"}]
    bad["user_encoder"] = state
    with pytest.raises(ValueError, match="reserved"):
        ex.export(net, bad, tmp_path / "x", pt2=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("mlp", [[], [8]])
def test_stored_user_vectors_equal_the_per_request_tower(tiny, mlp):
    # A known user without feature overrides is served from the vector computed at export;
    # sending the user's own stored history recomputes it through the tower, per request.
    _, bundle = tiny
    torch.manual_seed(1)
    net = TwoTower(n_user_tokens=bundle["user_encoder"]["n_tokens"], n_item_tokens=bundle["item_encoder"]["n_tokens"],
                   n_items=len(bundle["item_ids"]), dim=8, user_mlp=mlp).eval()
    rec = ex.build_recommender(net, bundle, "v")
    assert rec.user_vectors.shape == (len(bundle["user_ids"]), 8)
    for row in (0, 7, len(bundle["user_ids"]) - 1):
        user = bundle["user_ids"][row]
        own = [bundle["item_ids"][i - 1] for i in bundle["history"][row] if i > 0]
        stored = rec.user_vector(user, {})
        recomputed = rec.user_vector(user, {"history": own})
        torch.testing.assert_close(stored, recomputed, rtol=1e-6, atol=1e-6)
        assert rec.recommend(user, {}, 5, [])[0] == rec.recommend(user, {"history": own}, 5, [])[0]


def test_the_repeat_term_moves_the_users_bag_in_recommend_and_score(tiny):
    _, bundle = tiny
    torch.manual_seed(2)
    net = TwoTower(n_user_tokens=bundle["user_encoder"]["n_tokens"], n_item_tokens=bundle["item_encoder"]["n_tokens"],
                   n_items=len(bundle["item_ids"]), dim=8, repeat=True).eval()
    plain = ex.build_recommender(net, bundle, "v")
    with torch.no_grad():
        net.repeat.fill_(-100.0)  # far below any score: the bag sinks to the bottom
    rec = ex.build_recommender(net, bundle, "v")
    assert plain.repeat == 0.0 and rec.repeat == -100.0
    row = next(r for r in range(len(bundle["user_ids"])) if (bundle["history"][r] > 0).sum() >= 2)
    user = bundle["user_ids"][row]
    bag = [bundle["item_ids"][i - 1] for i in bundle["history"][row] if i > 0]
    others = [i for i in bundle["item_ids"] if i not in bag]
    ids, scores = rec.recommend(user, {}, len(others), [])
    assert sorted(ids) == sorted(others)  # every item outside the bag ranks above the bag
    got = rec.score(user, {}, bag[:2] + others[:2])
    base = plain.score(user, {}, bag[:2] + others[:2])
    assert got == pytest.approx([base[0] - 100.0, base[1] - 100.0, base[2], base[3]], abs=1e-4)
    # a history sent with the request is the bag: an item in it sinks for a new user too
    new_ids, _ = rec.recommend("someone-new", {"history": [others[0]]}, len(bundle["item_ids"]), [])
    assert new_ids[-1] == others[0]
