"""The synthetic shop's impression lists: shapes, graded labels, observable features that carry
the hidden taste (a model of them beats random order)."""
import numpy as np

from rankers.data.synthetic import World
from rankers.data.synthetic_lists import feature_names, impression_lists
from rankers.metrics.lists import ndcg_at_k, random_baseline
from rankers.model.linear import SparseLinear
from rankers.training.listwise import fit, predict
from rankers.training.proximal import FOBOS


def test_lists_have_the_promised_shape_and_labels():
    w = World(400, 150, 10, seed=0)
    d = impression_lists(w, 500, n_candidates=8, user_buckets=64, seed=0)
    assert d.n_lists == 500 and d.n_rows == 4000 and (np.diff(d.list_offsets) == 8).all()
    assert set(np.unique(d.labels)) <= {0.0, 1.0, 2.0} and (d.labels > 0).any()
    assert d.n_features == len(feature_names(w, 64)) and d.feat_index.max() < d.n_features
    assert (np.diff(d.feat_offsets) >= 13).all()  # 6 numbers, 7 one-hots, 1-3 styles per row
    again = impression_lists(w, 500, n_candidates=8, user_buckets=64, seed=0)
    assert (again.labels == d.labels).all() and (again.feat_value == d.feat_value).all()  # seeded
    pos = d.with_positives()
    assert 0 < pos.n_lists < 500 and (np.maximum.reduceat(pos.labels, pos.list_offsets[:-1]) >= 1).all()


def test_the_features_carry_the_taste():
    w = World(800, 200, 15, seed=1)
    train = impression_lists(w, 6000, user_buckets=64, seed=0).with_positives().scaled_within_lists()
    test = impression_lists(w, 1500, user_buckets=64, seed=1).with_positives().scaled_within_lists()
    m = SparseLinear(train.n_features)
    fit(m, train, FOBOS(m.parameters(), lr=1.0), passes=1, batch_lists=16, k=5)
    learned = float(np.mean(ndcg_at_k(predict(m, test), test.labels, test.list_offsets, 5)))
    assert learned > random_baseline(test.labels, test.list_offsets, ndcg_at_k, k=5) + 0.05
