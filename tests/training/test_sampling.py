"""Pair sampling and the training batches it becomes."""
import numpy as np
import pytest
import torch

from rankers.training.batches import CatalogueNegatives, PairBatch, SampledNegatives
from rankers.training.datamodule import PairStream
from rankers.training.sampling import Negatives, PairSampler
from tests.conftest import LEAVE_LAST, negatives, prep, synthetic_source


@pytest.fixture(scope="module")
def synthetic():
    return prep(synthetic_source(300, 120, seed=1).load(), 2.0, LEAVE_LAST, LEAVE_LAST)


def test_sampler_negatives_respect_grades(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(uniform=3, popular=2, own=2))
    rows = np.arange(len(s))
    neg, neg_grade, mask = s.negatives(rows, np.random.default_rng(0))
    assert neg.shape == (len(s), 7)
    true_grade = s.grade_of(s.user[:, None], neg)
    own = neg_grade[:, 5:]
    # own negatives are the user's real lower-graded events (or uniform fall-backs)
    np.testing.assert_array_equal(true_grade, neg_grade)
    assert (mask == (neg_grade < s.pos_grade[:, None])).all()
    assert (own > 0).mean() > 0.5  # most positives have a viewed-but-not-bought item to contrast


def test_sampler_is_reproducible(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives())
    rows = np.arange(0, len(s), 3)
    a, b = s.negatives(rows, np.random.default_rng(5)), s.negatives(rows, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])


def test_popular_negatives_follow_popularity(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(uniform=0, popular=50, own=0),
                    popularity_smoothing=1.0)
    neg, _, _ = s.negatives(np.arange(len(s)), np.random.default_rng(0))
    counts = np.bincount(neg.ravel(), minlength=synthetic.n_items)
    pos = np.bincount(s.pos, minlength=synthetic.n_items)
    assert np.corrcoef(counts, pos)[0, 1] > 0.95


def test_bad_pair_sets_are_named():
    with pytest.raises(ValueError, match="loss.negatives: counts must be >= 0"):
        Negatives(uniform=-1, popular=0, own=0, catalogue=False, shared=0, positives_per_row=1)
    with pytest.raises(ValueError, match="at least one > 0"):
        Negatives(uniform=0, popular=0, own=0, catalogue=False, shared=0, positives_per_row=1)
    Negatives(uniform=0, popular=0, own=0, catalogue=True, shared=0, positives_per_row=1)
    Negatives(uniform=0, popular=0, own=0, catalogue=False, shared=64, positives_per_row=1)


@pytest.mark.parametrize("catalogue", [False, True])
def test_pair_batches_are_typed_and_carry_each_users_count_of_positives(synthetic, catalogue):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(catalogue=catalogue))
    stream = PairStream(synthetic, s, 64, seed=0, epoch=0, id_dropout=0.1, history_dropout=0.0)
    order = np.random.default_rng((0, 0)).permutation(len(s))
    tr = synthetic.train
    positives = np.bincount(tr.user[tr.grade >= 2.0], minlength=len(synthetic.user_ids))
    seen = 0
    for b, batch in enumerate(stream):
        assert isinstance(batch, PairBatch)
        rows = order[b * 64:(b + 1) * 64]
        users = s.user[rows]
        np.testing.assert_array_equal(batch.user_positives.numpy(), positives[users])
        # the positive, by global index, is each row's positive, and never in the row's history bag
        np.testing.assert_array_equal(batch.items[batch.pos].numpy(), s.pos[rows])
        in_bag = (batch.users.history == batch.items[batch.pos][:, None] + 1) & (batch.users.history_weights > 0)
        assert not in_bag.any()
        if catalogue:
            assert isinstance(batch.negatives, CatalogueNegatives) and len(batch.items) == synthetic.n_items
            r, i, g = batch.negatives.graded()
            np.testing.assert_array_equal(g.numpy(), s.grade_of(users[r.numpy()], i.numpy()))
            grade = torch.zeros(len(users), synthetic.n_items)
            grade[r, i] = g
            assert len(r) == int((s.grade_of(users[:, None], np.arange(synthetic.n_items)[None]) > 0).sum())
            # the positive is graded as itself, so it is no pair of its own
            assert (grade[batch.pos_row, batch.pos] >= batch.pos_grade).all()
        else:
            assert isinstance(batch.negatives, SampledNegatives)
            assert batch.negatives.index.shape == (len(rows), 8)
        seen += len(users)
    assert seen == len(s) and b + 1 == len(stream)


def test_ranks_and_workers_share_an_epoch_without_overlap(synthetic):
    # Under DDP every rank steps through every batch with its share of the rows; DataLoader
    # workers take whole batches; every positive is trained on once per epoch either way.
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives())
    stream = lambda **kw: PairStream(synthetic, s, 50, seed=3, epoch=1, id_dropout=0.0,  # noqa: E731
                                     history_dropout=0.0, **kw)
    whole = list(stream())
    ranks = [list(stream(rank=r, world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    order = np.random.default_rng((3, 1)).permutation(len(s))
    for b, (a, c) in enumerate(zip(*ranks)):
        rows = order[b * 50:(b + 1) * 50]
        got = np.concatenate([a.items[a.pos].numpy(), c.items[c.pos].numpy()])
        assert sorted(got.tolist()) == sorted(s.pos[rows].tolist())
        assert len(a) == len(rows[0::2]) and len(c) == len(rows[1::2])
    loader = torch.utils.data.DataLoader(stream(), batch_size=None, num_workers=2, collate_fn=lambda b: b)
    got = sorted(tuple(b.items.tolist()) for b in loader)
    assert got == sorted(tuple(b.items.tolist()) for b in whole)  # every batch once, none twice
    with pytest.raises(ValueError, match="fewer than the 4 DDP processes"):
        PairStream(synthetic, s, 3, seed=0, epoch=0, id_dropout=0.0, history_dropout=0.0, rank=0, world=4)


def test_shared_negatives_pair_every_row_with_the_same_items_and_true_grades(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 1.0, negatives(uniform=1, popular=0, own=0, shared=40))
    stream = PairStream(synthetic, s, 64, seed=0, epoch=0, id_dropout=0.0, history_dropout=0.0)
    batch = next(iter(stream))
    neg = batch.negatives
    shared = batch.items[neg.shared].numpy()
    assert len(shared) == len(set(shared)) and 30 <= len(shared) <= 40  # distinct uniform draws
    rows = np.random.default_rng((0, 0)).permutation(len(s))[:64]
    users = s.user[rows]
    r, c, g = neg.graded()
    dense = torch.zeros(len(users), len(shared))
    dense[r, c] = g
    np.testing.assert_array_equal(dense.numpy(), s.grade_of(users[:, None], shared[None, :]))
    assert (g > 0).all() and len(set(zip(r.tolist(), c.tolist()))) == len(g)  # each graded pair once
    assert bool((r[1:] >= r[:-1]).all())  # by row, as the C++ pass walks them
    assert len(g) > 0  # views of the batch's users among them: masked or graded pairs


@pytest.mark.parametrize("per_row", [3, 1000])
def test_rows_of_several_positives_hold_one_user_and_cover_the_epoch_once(synthetic, per_row):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(catalogue=True, positives_per_row=per_row))
    stream = PairStream(synthetic, s, 60, seed=0, epoch=2, id_dropout=0.0, history_dropout=0.0)
    counts = np.bincount(s.user)
    assert s.n_rows == int(((counts + per_row - 1) // per_row).sum())
    got, rows = [], 0
    for batch in stream:
        pos_row = batch.pos_row.numpy()
        assert (np.diff(pos_row) >= 0).all() and pos_row[0] == 0 and pos_row[-1] == len(batch.users.tokens) - 1
        assert np.bincount(pos_row).max() <= per_row
        users = batch.users.tokens[:, 0].numpy()  # the id token names the row's user
        items = batch.items[batch.pos].numpy()
        # every positive of a row left its history bag; the other items of the history stay
        hist, hw = batch.users.history.numpy(), batch.users.history_weights.numpy()
        for r in range(len(users)):
            mine = items[pos_row == r] + 1
            assert not np.isin(hist[r][hw[r] > 0], mine).any()
            assert (hw[r][(hist[r] > 0) & ~np.isin(hist[r], mine)] > 0).all()
        got += list(zip(np.repeat(users, np.bincount(pos_row)), items))
        rows += len(users)
    assert rows == s.n_rows and len(got) == len(s)
    tokens = synthetic.user_tokens[s.user, 0]
    assert sorted(got) == sorted(zip(tokens, s.pos))  # each (user, positive) once per epoch
    if per_row == 1000:  # a row per user: all its positives at once
        assert rows == len(np.unique(s.user))


def test_popular_shared_negatives_carry_importance_weights_that_estimate_the_catalogue(synthetic):
    neg = Negatives(uniform=0, popular=0, own=0, catalogue=False, shared=300, positives_per_row=1,
                    shared_popularity=1.0)
    s = PairSampler(synthetic.train, synthetic.n_items, 1.0, neg)
    users = s.user[:50]
    rng = np.random.default_rng(0)
    pops = np.bincount(s.pos, minlength=synthetic.n_items)
    totals, popular_share = [], []
    for _ in range(200):
        items, (r, c, g), w = s.shared_negatives(users, rng)
        assert len(items) == len(set(items.tolist())) == len(w) and (w > 0).all()
        # weight = draws / (S N q): for items drawn once, inversely proportional to q ∝ 1 + positives
        once = np.isclose(w * s.shared * synthetic.n_items * s.shared_q[items], 1.0)
        assert once.any()
        totals.append(w.sum())
        popular_share.append(np.mean(pops[items] > np.median(pops)))
        np.testing.assert_array_equal(g, s.grade_of(users[r], items[c]))
    # Σ weights estimates the catalogue's count / N = 1 (unbiased), whatever the proposal
    assert abs(np.mean(totals) - 1.0) < 0.02
    uniform = PairSampler(synthetic.train, synthetic.n_items, 1.0, negatives(uniform=0, popular=0, own=0, shared=300))
    assert uniform.shared_negatives(users, rng)[2] is None  # uniform draws: no weights
    uniform_share = np.mean([np.mean(pops[uniform.shared_negatives(users, rng)[0]] > np.median(pops))
                             for _ in range(50)])
    assert np.mean(popular_share) > uniform_share + 0.05  # the draws lean to the popular items


def test_shared_popularity_is_refused_where_the_cpp_pass_cannot_weigh_columns(cfg_factory):
    from rankers.training.train import check_config

    check_config(cfg_factory("loss.pair_loss=hinge", "loss.weighting=warp", "loss.negatives.uniform=0",
                             "loss.negatives.popular=0", "loss.negatives.own=0", "loss.negatives.shared=64",
                             "loss.negatives.shared_popularity=1.0"))
    with pytest.raises(ValueError, match="shared_popularity=1.0 .* got logistic/lambda, uniform=4"):
        check_config(cfg_factory("loss.weighting=lambda", "loss.negatives.shared=64",
                                 "loss.negatives.shared_popularity=1.0"))
    with pytest.raises(ValueError, match="shared_popularity must be >= 0"):
        Negatives(uniform=0, popular=0, own=0, catalogue=False, shared=8, positives_per_row=1, shared_popularity=-1)
