"""Pair sampling and the training batches it becomes."""
import numpy as np
import pytest
import torch

from rankers.training.batches import CatalogueNegatives, PairBatch, SampledNegatives
from rankers.training.datamodule import PairEpoch
from rankers.training.sampling import Negatives, PairSampler
from tests.conftest import LEAVE_LAST, negatives, prep, synthetic_source


@pytest.fixture(scope="module")
def synthetic():
    return prep(synthetic_source(300, 120, seed=1).load(), 2.0, LEAVE_LAST, LEAVE_LAST)


def test_sampler_negatives_respect_grades(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(uniform=3, popular=2, own=2))
    b = s.sample(np.random.default_rng(0))
    assert b.neg.shape == (len(b.user), 7)
    true_grade = s.grade_of(b.user[:, None], b.neg)
    own = b.neg_grade[:, 5:]
    # own negatives are the user's real lower-graded events (or uniform fall-backs)
    np.testing.assert_array_equal(true_grade, b.neg_grade)
    assert (b.mask == (b.neg_grade < b.pos_grade[:, None])).all()
    assert (own > 0).mean() > 0.5  # most positives have a viewed-but-not-bought item to contrast


def test_sampler_is_reproducible(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives())
    a, b = s.sample(np.random.default_rng(5)), s.sample(np.random.default_rng(5))
    np.testing.assert_array_equal(a.neg, b.neg)


def test_popular_negatives_follow_popularity(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(uniform=0, popular=50, own=0),
                    popularity_smoothing=1.0)
    b = s.sample(np.random.default_rng(0))
    counts = np.bincount(b.neg.ravel(), minlength=synthetic.n_items)
    pos = np.bincount(s.pos, minlength=synthetic.n_items)
    assert np.corrcoef(counts, pos)[0, 1] > 0.95


def test_bad_pair_sets_are_named():
    with pytest.raises(ValueError, match="loss.negatives: counts must be >= 0"):
        Negatives(uniform=-1, popular=0, own=0, catalogue=False)
    with pytest.raises(ValueError, match="at least one > 0"):
        Negatives(uniform=0, popular=0, own=0, catalogue=False)
    Negatives(uniform=0, popular=0, own=0, catalogue=True)


@pytest.mark.parametrize("catalogue", [False, True])
def test_pair_batches_are_typed_and_carry_each_users_count_of_positives(synthetic, catalogue):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, negatives(catalogue=catalogue))
    pairs = s.sample(np.random.default_rng(0))
    epoch = PairEpoch(synthetic, pairs, 64, np.random.default_rng(1), 0.1, 0.0, s)
    tr = synthetic.train
    positives = np.bincount(tr.user[tr.grade >= 2.0], minlength=len(synthetic.user_ids))
    seen = 0
    for b in range(len(epoch)):
        batch = epoch[b]
        assert isinstance(batch, PairBatch)
        rows = epoch.order[b * 64:(b + 1) * 64]
        users = pairs.user[rows]
        np.testing.assert_array_equal(batch.user_positives.numpy(), positives[users])
        # the positive, by global index, is each row's positive, and never in the row's history bag
        np.testing.assert_array_equal(batch.items[batch.pos].numpy(), pairs.pos[rows])
        in_bag = (batch.users.history == batch.items[batch.pos][:, None] + 1) & (batch.users.history_weights > 0)
        assert not in_bag.any()
        if catalogue:
            assert isinstance(batch.negatives, CatalogueNegatives) and len(batch.items) == synthetic.n_items
            g, mask = batch.negatives.grades_and_mask(batch.pos_grade, synthetic.n_items)
            assert (mask.gather(1, batch.pos[:, None]) == 0).all()  # the positive is not its own negative
            assert torch.equal(mask, (g < batch.pos_grade[:, None]).float())
        else:
            assert isinstance(batch.negatives, SampledNegatives)
            np.testing.assert_array_equal(batch.items[batch.negatives.index].numpy(), pairs.neg[rows])
        seen += len(users)
    assert seen == len(pairs.user)
