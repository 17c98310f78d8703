import numpy as np
import pandas as pd
import pytest

from rankers.data.errors import DataError
from rankers.data.features import FeatureSpec, validate_table
from rankers.data.eventlog import EventLog
from rankers.data.log import DEFAULT_GRADES, validate_log
from rankers.data.source import RawData
from rankers.data.splits import leave_last_n, temporal
from tests.conftest import LEAVE_LAST, prep, synthetic_source


def small_log():
    rows = [("u1", "i1", "view", 1), ("u1", "i2", "purchase", 2), ("u1", "i3", "cart", 3), ("u1", "i4", "view", 4),
            ("u2", "i1", "purchase", 5), ("u2", "i3", "view", 6), ("u3", "i2", "cart", 7)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp"])
    return EventLog.from_frame(validate_log(df, "log", DEFAULT_GRADES)).deduplicate()


def pairs(log: EventLog):
    return [[str(log.user_ids[u]), str(log.item_ids[i])] for u, i in zip(log.user, log.item)]


def of_user(log: EventLog, user: str) -> EventLog:
    return log.take(log.user_ids[log.user] == user)


def test_leave_last_n_holds_out_the_last_positive_and_what_follows():
    train, test = leave_last_n(small_log(), threshold=2.0, n=1)
    assert pairs(test) == [["u1", "i3"]]
    assert {i for _, i in pairs(of_user(train, "u1"))} == {"i1", "i2"}  # i4 came after the cut
    assert set(train.users_of()) == {"u1", "u2", "u3"}  # u2/u3 have nothing before their only positive


def test_temporal_split_by_cutoff():
    train, test = temporal(small_log(), threshold=2.0, cutoff=5)
    assert train.timestamp.max() < 5 and test.timestamp.min() >= 5
    assert set(test.items_of()) == {"i1", "i2"}  # positives only


def test_cold_test_user_without_features_is_an_error():
    log = small_log()
    u3 = log.user_ids[log.user] == "u3"
    raw = RawData(log=log.take(~u3), test_log=log.take(u3), name="tiny")
    with pytest.raises(DataError, match=r"tiny test, column 'user_id', row 0: test user 'u3' has no training"):
        prep(raw, 2.0)


def test_cold_test_user_with_features_is_scored():
    log = small_log()
    users = validate_table(pd.DataFrame({"user_id": ["u1", "u2", "u3"], "g": ["a", "b", "a"]}), "user_id",
                           [FeatureSpec("g")], "users")
    u3 = log.user_ids[log.user] == "u3"
    raw = RawData(log=log.take(~u3), test_log=log.take(u3), users=users, user_specs=[FeatureSpec("g")], name="tiny")
    data = prep(raw, 2.0)
    u3 = list(data.user_ids).index("u3")
    assert data.test.users.tolist() == [u3]
    assert data.user_tokens[u3, 0] == data.user_vocab.vocab["user_id"]["<oov>"]  # OOV id, then its features
    assert data.user_tokens[u3, 1] == data.user_vocab.vocab["g"]["a"]


@pytest.fixture(scope="module")
def synthetic():
    return prep(synthetic_source(300, 120, seed=1).load(), 2.0, LEAVE_LAST, LEAVE_LAST)


def test_eval_sets_exclude_train_positives_and_never_target_them(synthetic):
    for split in (synthetic.test, synthetic.val):
        for t, e in zip(split.targets.lists(slice(None)), split.exclude.lists(slice(None))):
            assert len(t) and not set(t) & set(e)


def test_synthetic_is_seeded_and_sized():
    a = synthetic_source(50, 30, seed=3).load()
    b = synthetic_source(50, 30, seed=3).load()
    assert pairs(a.log) == pairs(b.log) and np.array_equal(a.log.grade, b.log.grade)
    assert all(u.startswith("u") for u in a.log.user_ids) and all(i.startswith("i") for i in a.log.item_ids)
    assert set(np.unique(a.log.grade)) <= {1.0, 2.0, 3.0}
    assert len(a.items) == 30 and len(a.users) == 50


def test_a_split_is_required_without_a_test_log():
    with pytest.raises(ValueError, match="data.split is required"):
        prep(synthetic_source(50, 30, seed=3).load(), 2.0, split=None)


def test_an_eval_sample_is_seeded_and_keeps_each_users_rows(synthetic):
    full = synthetic.test
    a, b = full.sample(50, seed=4), full.sample(50, seed=4)
    assert len(a.users) == 50 and np.array_equal(a.users, b.users) and np.all(np.diff(a.users) > 0)
    assert not np.array_equal(a.users, full.sample(50, seed=5).users)
    where = {u: r for r, u in enumerate(full.users)}
    for r, u in enumerate(a.users):
        np.testing.assert_array_equal(a.targets.row(r), full.targets.row(where[u]))
        np.testing.assert_array_equal(a.exclude.row(r), full.exclude.row(where[u]))
    assert full.sample(None, 0) is full and full.sample(10**9, 0) is full
    with pytest.raises(ValueError, match="eval.max_users must be >= 1"):
        full.sample(0, 0)
