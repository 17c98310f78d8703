import numpy as np
import pandas as pd
import pytest

from rankers.data.dataset import prepare
from rankers.data.errors import DataError
from rankers.data.features import FeatureSpec, validate_table
from rankers.data.log import DEFAULT_GRADES, deduplicate, validate_log
from rankers.data.sampling import PairSampler
from rankers.data.source import RawData
from rankers.data.splits import leave_last_n, temporal
from rankers.data.synthetic import SyntheticSource


def small_log():
    rows = [("u1", "i1", "view", 1), ("u1", "i2", "purchase", 2), ("u1", "i3", "cart", 3), ("u1", "i4", "view", 4),
            ("u2", "i1", "purchase", 5), ("u2", "i3", "view", 6), ("u3", "i2", "cart", 7)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp"])
    return deduplicate(validate_log(df, "log", DEFAULT_GRADES))


def test_leave_last_n_holds_out_the_last_positive_and_what_follows():
    train, test = leave_last_n(small_log(), threshold=2.0, n=1)
    assert test[["user_id", "item_id"]].values.tolist() == [["u1", "i3"]]
    assert set(train[train.user_id == "u1"].item_id) == {"i1", "i2"}  # i4 came after the cut
    assert set(train.user_id) == {"u1", "u2", "u3"}  # u2/u3 have nothing before their only positive


def test_temporal_split_by_cutoff():
    train, test = temporal(small_log(), threshold=2.0, cutoff=5)
    assert train.timestamp.max() < 5 and test.timestamp.min() >= 5
    assert set(test.item_id) == {"i1", "i2"}  # positives only


def test_cold_test_user_without_features_is_an_error():
    log = small_log()
    raw = RawData(log=log[log.user_id != "u3"], test_log=log[log.user_id == "u3"], name="tiny")
    with pytest.raises(DataError, match=r"tiny test, column 'user_id', row 0: test user 'u3' has no training"):
        prepare(raw, 2.0)


def test_cold_test_user_with_features_is_scored():
    log = small_log()
    users = validate_table(pd.DataFrame({"user_id": ["u1", "u2", "u3"], "g": ["a", "b", "a"]}), "user_id",
                           [FeatureSpec("g")], "users")
    raw = RawData(log=log[log.user_id != "u3"], test_log=log[log.user_id == "u3"], users=users,
                  user_specs=[FeatureSpec("g")], name="tiny")
    data = prepare(raw, 2.0)
    u3 = list(data.user_ids).index("u3")
    assert data.test.users.tolist() == [u3]
    assert data.user_tokens[u3, 0] == 1  # OOV id, but a feature token follows
    assert data.user_tokens[u3, 1] == data.user_encoder.vocab["g"]["a"]


@pytest.fixture(scope="module")
def synthetic():
    return prepare(SyntheticSource(n_users=300, n_items=120, seed=1).load(), 2.0,
                   {"kind": "leave_last_n", "n": 1}, {"kind": "leave_last_n", "n": 1})


def test_eval_sets_exclude_train_positives_and_never_target_them(synthetic):
    for split in (synthetic.test, synthetic.val):
        for t, e in zip(split.targets, split.exclude):
            assert len(t) and not set(t) & set(e)


def test_sampler_negatives_respect_grades(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, uniform=3, popular=2, own=2)
    b = s.sample(np.random.default_rng(0))
    assert b.neg.shape == (len(b.user), 7)
    true_grade = s.grade_of(b.user[:, None], b.neg)
    own = b.neg_grade[:, 5:]
    # own negatives are the user's real lower-graded events (or uniform fall-backs)
    np.testing.assert_array_equal(true_grade, b.neg_grade)
    assert (b.mask == (b.neg_grade < b.pos_grade[:, None])).all()
    assert (own > 0).mean() > 0.5  # most positives have a viewed-but-not-bought item to contrast


def test_sampler_is_reproducible(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0)
    a, b = s.sample(np.random.default_rng(5)), s.sample(np.random.default_rng(5))
    np.testing.assert_array_equal(a.neg, b.neg)


def test_popular_negatives_follow_popularity(synthetic):
    s = PairSampler(synthetic.train, synthetic.n_items, 2.0, uniform=0, popular=50, own=0, popularity_smoothing=1.0)
    b = s.sample(np.random.default_rng(0))
    counts = np.bincount(b.neg.ravel(), minlength=synthetic.n_items)
    pos = np.bincount(s.pos, minlength=synthetic.n_items)
    assert np.corrcoef(counts, pos)[0, 1] > 0.95


def test_synthetic_is_seeded_and_sized():
    a = SyntheticSource(n_users=50, n_items=30, seed=3).load()
    b = SyntheticSource(n_users=50, n_items=30, seed=3).load()
    pd.testing.assert_frame_equal(a.log, b.log)
    assert a.log.user_id.str.match(r"u\d+").all() and a.log.item_id.str.match(r"i\d+").all()
    assert set(a.log.grade.unique()) <= {1.0, 2.0, 3.0}
    assert len(a.items) == 30 and len(a.users) == 50


def test_pair_batches_carry_each_users_count_of_training_positives(synthetic):
    from rankers.data.datamodule import PairEpoch

    s = PairSampler(synthetic.train, synthetic.n_items, 2.0)
    pairs = s.sample(np.random.default_rng(0))
    epoch = PairEpoch(synthetic, pairs, 64, np.random.default_rng(1))
    tr = synthetic.train
    positives = np.bincount(tr.user[tr.grade >= 2.0], minlength=len(synthetic.user_ids))
    seen = 0
    for b in range(len(epoch)):
        batch = epoch[b]
        users = pairs.user[epoch.order[b * 64:(b + 1) * 64]]
        np.testing.assert_array_equal(batch["user_positives"].numpy(), positives[users])
        seen += len(users)
    assert seen == len(pairs.user)
