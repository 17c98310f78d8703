"""The two-stage model.ts: the two-tower retriever's pair scores, and the ElasticRank reranker
scoring a list exactly as training encoded and scaled it."""
import json

import numpy as np
import pytest
import torch

from rankers.artifact.testing import random_export
from rankers.artifact.schema import TWO_STAGE_FORMAT
from rankers.artifact.two_stage import RETRIEVAL, export_two_stage, load_retriever, retrieval_scores
from rankers.data.synthetic import World
from rankers.data.synthetic_lists import ITEM_COLUMNS, encode_lists, impression_table, item_frame, shop_encoding
from rankers.model.linear import SparseLinear

PAIR_COLUMNS = ["price_vs_usual", "abs_price_vs_usual", "category_affinity", "brand_affinity"]


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    # the world's ids (u0.., i0..); the repeat term makes scores depend on the stored histories
    return random_export(tmp_path_factory.mktemp("retriever") / "export", n_items=150, n_users=400, seed=2,
                         net_hparams={"score": {"repeat": True}}, pt2=False)


@pytest.fixture(scope="module")
def two_stage(retriever, tmp_path_factory):
    world = World(400, 150, 20, seed=0)
    df = impression_table(world, 200, seed=5)
    df[RETRIEVAL] = retrieval_scores(load_retriever(retriever), df["user_id"], df["item_id"])
    enc = shop_encoding(world, 64, retrieval=True)
    weight = torch.randn(enc.n_features, generator=torch.Generator().manual_seed(0))
    out = export_two_stage(tmp_path_factory.mktemp("two") / "export", retriever, enc, weight, True, item_frame(world),
                           ITEM_COLUMNS, 40, RETRIEVAL)
    return out, df, enc, weight


def test_pair_scores_are_the_scores_of_model_ts(retriever):
    m = load_retriever(retriever)
    users, items = ["u3", "u17", "nobody"], ["i0", "i5", "i149"]
    pu, pi = torch.tensor([0, 0, 1, 2, 2, 1]), torch.tensor([0, 1, 2, 0, 2, 1])
    got = m.pair_scores(users, items, pu, pi)
    want = [m.score(users[u], {}, [items[i]])[0] for u, i in zip(pu.tolist(), pi.tolist())]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(torch.jit.Error, match="unknown item id 'i999'"):
        m.pair_scores(users, ["i999"], pu[:1], torch.tensor([0]))
    ids, scores = m.rerank("u3", {}, ["i0", "i5", "i149"], {})
    assert sorted(ids) == ["i0", "i149", "i5"] and scores == sorted(scores, reverse=True)
    assert dict(zip(ids, scores)) == pytest.approx(dict(zip(["i0", "i5", "i149"], m.score("u3", {}, ["i0", "i5", "i149"]))))
    with pytest.raises(torch.jit.Error, match="no candidate features"):
        m.rerank("u3", {}, ["i0"], {"price": ["1"]})


def request(df, lst):
    """(user, features, candidates, candidate features) of list ``lst``: the user's segment and
    country as candidate columns (as features they would also reach the retriever, whose random
    users hold other values), the item columns left to the export's item table."""
    rows = df[df["list_id"] == lst]
    cand = {c: [repr(float(x)) for x in rows[c]] for c in PAIR_COLUMNS}
    cand.update({c: [str(x) for x in rows[c]] for c in ("segment", "country")})
    return str(rows["user_id"].iloc[0]), {}, [str(x) for x in rows["item_id"]], cand


def test_rerank_scores_a_list_as_training_did(two_stage):
    out, df, enc, weight = two_stage
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == TWO_STAGE_FORMAT and meta["candidates"] == 40
    ts = torch.jit.load(str(out / "model.ts"))
    data = encode_lists(df, enc, "test").scaled_within_lists()
    lin = SparseLinear(enc.n_features)
    lin.weight.data.copy_(weight)
    rows = data.feature_rows()
    trained = lin(torch.from_numpy(data.feat_index), torch.from_numpy(data.feat_value), torch.from_numpy(rows),
                  data.n_rows).detach().numpy()
    for lst in (0, 7, 123):
        user, feats, items, cand = request(df, lst)
        ids, scores = ts.rerank(user, feats, items, cand)  # item columns from the export's item table
        want = trained[data.list_offsets[lst]:data.list_offsets[lst + 1]]
        assert dict(zip(ids, scores)) == pytest.approx(dict(zip(items, want.tolist())), abs=1e-5)
        assert scores == sorted(scores, reverse=True)
        assert ts.score(user, feats, items) != pytest.approx(want.tolist(), abs=1e-3)  # pair columns matter
    # the item's own single-column features come encoded per item from the export; a request that
    # gives one of their columns (here every candidate's category) has it encoded from its cells
    assert len(ts.pre_features) >= 6
    user, feats, items, cand = request(df, 7)
    moved = df[df["list_id"] == 7].assign(category="c1")
    moved["category"] = moved["category"].astype(object)
    again = encode_lists(moved, enc, "moved").scaled_within_lists()
    r = again.feature_rows()
    want = lin(torch.from_numpy(again.feat_index), torch.from_numpy(again.feat_value), torch.from_numpy(r),
               again.n_rows).detach().numpy()
    ids, scores = ts.rerank(user, feats, items, {**cand, "category": ["c1"] * len(items)})
    assert dict(zip(ids, scores)) == pytest.approx(dict(zip(items, want.tolist())), abs=1e-5)
    user, feats, items, cand = request(df, 0)
    # a context feature is the same column for every candidate; a field the retriever reads too goes to both
    seg = {"segment": cand["segment"][:1]}
    both = ts.rerank(user, seg, items, {k: v for k, v in cand.items() if k != "segment"})
    assert both == ts.rerank(user, seg, items, cand)
    with pytest.raises(torch.jit.Error, match="unknown candidate feature 'colour_code'"):
        ts.rerank(user, feats, items, {"colour_code": ["1"] * len(items)})
    with pytest.raises(torch.jit.Error, match="candidate feature 'price_vs_usual' has 2 values for 10"):
        ts.rerank(user, feats, items, {"price_vs_usual": ["1", "2"]})
    with pytest.raises(torch.jit.Error, match="unknown feature 'shoe_size'"):
        ts.rerank(user, {"shoe_size": ["42"]}, items, cand)
    with pytest.raises(torch.jit.Error, match="context feature 'segment' takes one value"):
        ts.rerank(user, {"segment": ["budget", "premium"]}, items, {})
    with pytest.raises(torch.jit.Error, match="numeric column 'price_vs_usual' row 0 got 'cheap'"):
        ts.rerank(user, feats, items, {**cand, "price_vs_usual": ["cheap"] + cand["price_vs_usual"][1:]})


def test_item_features_encoded_at_export_score_as_the_cells_do(two_stage, retriever, tmp_path):
    out, df, enc, weight = two_stage
    world = World(400, 150, 20, seed=0)
    plain = export_two_stage(tmp_path / "plain", retriever, enc, weight, True, item_frame(world), ITEM_COLUMNS, 40,
                             RETRIEVAL, encode_items=False)
    fast, slow = torch.jit.load(str(out / "model.ts")), torch.jit.load(str(plain / "model.ts"))
    assert len(slow.pre_features) == 0 and len(fast.pre_features) > 0
    for lst in (3, 50):
        user, feats, items, cand = request(df, lst)
        a, b = fast.rerank(user, feats, items, cand), slow.rerank(user, feats, items, cand)
        assert a[0] == b[0] and a[1] == pytest.approx(b[1], abs=1e-6)
    a, b = fast.recommend("u9", {}, 8, []), slow.recommend("u9", {}, 8, [])
    assert a[0] == b[0] and a[1] == pytest.approx(b[1], abs=1e-6)  # features summed in another order


def test_recommend_reranks_the_retrievers_top_m(two_stage, retriever):
    out = two_stage[0]
    ts = torch.jit.load(str(out / "model.ts"))
    top_m, _ = load_retriever(retriever).recommend("u3", {}, 40, ["i0"])
    ids, scores = ts.recommend("u3", {}, 10, ["i0"])
    assert len(ids) == 10 and set(ids) <= set(top_m) and "i0" not in ids
    assert scores == sorted(scores, reverse=True)
    again, s2 = ts.rerank("u3", {}, top_m, {})
    assert again[:10] == ids and s2[:10] == pytest.approx(scores)
    with pytest.raises(torch.jit.Error, match="k must be >= 1"):
        ts.recommend("u3", {}, 0, [])


def test_a_retriever_must_be_a_two_tower_export(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.ts"):
        load_retriever(tmp_path)
