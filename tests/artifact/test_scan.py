"""recommend's fp16 scan: its error bound, its exact answers, its fallback, and the two-stage top-k."""
import json

import numpy as np
import pytest
import torch

import rankers.artifact.scan as ex
from rankers.artifact.runtime import Recommender
from rankers.artifact.testing import random_bundle, random_export, random_net
from rankers.artifact.users import UserResolver
from rankers.model import Tokenizer

N_ITEMS = 5000  # enough for the two-stage top-k at k = 10 (16 columns of 312)


def _recommender(vectors, bias, scan, repeat=0.0, seed=0):
    """A scripted Recommender over a given item table [N, D], users from a random bundle."""
    bundle = random_bundle(vectors.shape[0], 30, seed=seed)
    net = random_net(bundle, dim=vectors.shape[1], seed=seed, score={"repeat": repeat != 0.0})
    with torch.no_grad():
        net.scorer.repeat.fill_(repeat)
    users = UserResolver(Tokenizer(bundle.user_vocab), bundle.user_ids, bundle.user_tokens, bundle.user_weights,
                         bundle.history.offsets, bundle.history.values, bundle.item_ids)
    rec = Recommender(users, net.user_tower, net.scorer, vectors, bias, bundle.item_ids, "v", scan)
    return torch.jit.script(rec.eval().requires_grad_(False)), bundle


def _brute_force(rec, user, k, exclude=()):
    """Exact top-k from the float32 table: scores, repeat term on the user's bag, exclusions."""
    u = rec.user_vector(user, {})
    s = u @ rec.item_table() + rec.item_bias
    row = int(user[1:])
    h = rec.users.stored_history(row)
    s[h[h > 0] - 1] += float(rec.scorer.repeat)
    for item in exclude:
        s[int(item[1:])] = float("-inf")
    top = torch.topk(s, k)
    return [f"i{i}" for i in top.indices.tolist()], top.values


@pytest.fixture(scope="module")
def table():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N_ITEMS, 16, generator=g) * 0.3, torch.randn(N_ITEMS, generator=g) * 0.1


def test_the_fp16_scan_stays_within_its_error_bound(table):
    rec, _ = _recommender(*table, "fp16")
    for row in range(0, 30, 3):
        u = rec.user_vector(f"u{row}", {})
        err = (rec.approximate_scores(u) - (u @ rec.item_table() + rec.item_bias)).abs().max()
        bound = rec.scan_error(u, 0.0)
        assert 0 < err <= bound
        assert bound < 20 * err  # and tight enough to prune: not a vacuous bound


def test_the_error_bound_holds_where_rounding_errors_add_up():
    # Every entry just under 1 + 2^-11 rounds down to 1 in fp16 (spacing 2^-10 there), with
    # u's entries all positive: the errors add up instead of cancelling, as the bound assumes.
    d = 16
    vectors = torch.full((N_ITEMS, d), 1.0 + 0.999 * 2.0 ** -11)
    rec, _ = _recommender(vectors, torch.zeros(N_ITEMS), "fp16")
    u = torch.ones(d)
    err = float((rec.approximate_scores(u) - (u @ rec.item_table())).abs().max())
    assert 0.5 * rec.scan_error(u, 0.0) < err <= rec.scan_error(u, 0.0)


@pytest.mark.parametrize("repeat", [0.0, -0.3])
def test_fp16_recommend_returns_the_exact_top_k(table, repeat):
    rec, _ = _recommender(*table, "fp16", repeat=repeat)
    exact, _ = _recommender(*table, "fp32", repeat=repeat)
    exclude = [f"i{j}" for j in range(0, N_ITEMS, 7)]
    for row in range(30):
        user = f"u{row}"
        for k, ex_ids in ((10, []), (10, exclude), (100, exclude)):
            ids, scores = rec.recommend(user, {}, k, ex_ids)
            ref_ids, ref_scores = _brute_force(rec, user, k, ex_ids)
            assert ids == ref_ids
            torch.testing.assert_close(torch.tensor(scores), ref_scores, rtol=1e-5, atol=1e-6)
            assert exact.recommend(user, {}, k, ex_ids)[0] == ref_ids
    assert rec.exact_fallbacks == 0  # the candidates proved every answer: the re-scoring path ran


def test_near_ties_below_fp16_resolution_fall_back_to_the_exact_scan(table):
    vectors, bias = (t.clone() for t in table)
    # 200 items on top, a hair apart: within the fp16 scan's error of each other, far apart
    # for float32 (scores ~5 differ by ~1e-5; fp16 resolves ~5e-3 there, float32 ~5e-7)
    g = torch.Generator().manual_seed(1)
    vectors[:200] = vectors[0] + 1e-4 * torch.randn(200, vectors.shape[1], generator=g)
    bias[:200] = 5.0
    rec, _ = _recommender(vectors, bias, "fp16")
    ids, _ = rec.recommend("u3", {}, 10, [])
    assert rec.exact_fallbacks == 1
    assert ids == _brute_force(rec, "u3", 10)[0]


def test_every_item_and_k_beyond_the_catalogue(table):
    rec, _ = _recommender(*table, "fp16")
    ids, scores = rec.recommend("u1", {}, N_ITEMS + 5, ["i4"])
    assert len(ids) == N_ITEMS - 1 and "i4" not in ids and scores == sorted(scores, reverse=True)


def test_scan_plan_picks_fp16_for_large_catalogues_only():
    small, big = torch.zeros(100, 4), torch.zeros(ex.SCAN_MIN_ITEMS, 4)
    assert ex.scan_plan(small, torch.zeros(100)) == "fp32"
    assert ex.scan_plan(big, torch.zeros(len(big))) == "fp16"
    assert ex.scan_plan(big, torch.zeros(len(big)), "fp32") == "fp32"
    assert ex.scan_plan(small, torch.zeros(100), "fp16") == "fp16"
    huge = torch.full((ex.SCAN_MIN_ITEMS, 4), 1e5)  # beyond fp16's range: auto keeps fp32, fp16 refuses
    assert ex.scan_plan(huge, torch.zeros(len(huge))) == "fp32"
    with pytest.raises(ValueError, match="fits=False"):
        ex.scan_plan(huge, torch.zeros(len(huge)), "fp16")
    with pytest.raises(ValueError, match="'auto', 'fp16' or 'fp32'"):
        ex.scan_plan(small, torch.zeros(100), "int8")


def test_the_export_records_its_scan_and_reloads(tmp_path):
    d = random_export(tmp_path / "e", n_items=600, n_users=10, dim=8, pt2=False, scan="fp16")
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["scan"]["precision"] == "fp16"
    m = torch.jit.load(str(d / "model.ts"))
    assert m.approximate and m.recommend("u2", {}, 5, [])[0] == _brute_force(m, "u2", 5)[0]


@pytest.mark.parametrize("n, m", [(100_000, 125), (100_007, 125), (50_001, 17), (3000, 10), (16 * 500 + 3, 1)])
def test_topk_blocked_equals_topk(n, m):
    g = torch.Generator().manual_seed(n)
    s = torch.randn(n, generator=g)
    s[torch.randint(0, n, (n // 10,), generator=g)] = float("-inf")
    s[torch.randint(0, n, (5,), generator=g)] = 10.0  # equal best scores
    values, index = ex.topk_blocked(s, m)
    ref = torch.topk(s, m)
    assert torch.equal(values, ref.values) and torch.equal(s[index], values)
    assert index.unique().numel() == m


def test_score_forward_and_catalogue_scores_agree_across_scans(table):
    # the fp16 export keeps its float32 table as rows [N, D], the fp32 export as [D, N]
    rec, bundle = _recommender(*table, "fp16", repeat=-0.3)
    exact, _ = _recommender(*table, "fp32", repeat=-0.3)
    assert rec.item_matrix.numel() == 0 and exact.item_rows.numel() == 0  # one float32 copy each
    items = ["i0", "i17", "i4999"] + [f"i{i - 1}" for i in bundle.history.row(2)[:3]]  # some in u2's bag
    torch.testing.assert_close(torch.tensor(rec.score("u2", {}, items)), torch.tensor(exact.score("u2", {}, items)))
    u = rec.user_vector("u2", {})
    torch.testing.assert_close(rec.catalogue_scores(u), exact.catalogue_scores(u))
    args = (torch.as_tensor(bundle.user_tokens[:4]), torch.as_tensor(bundle.user_weights[:4]),
            torch.as_tensor(bundle.history.padded(np.arange(4)).astype(np.int64)),
            torch.as_tensor(bundle.history.padded(np.arange(4)) > 0).float())
    torch.testing.assert_close(rec(*args), exact(*args))
