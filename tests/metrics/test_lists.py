"""Per-list NDCG@k (graded gains, LightGBM's convention for lists without a relevant row) and Recall@k."""
import numpy as np

from rankers.metrics.lists import ndcg_at_k, random_baseline, recall_at_k


def test_ndcg_by_hand():
    # list 0: labels [2, 0, 1] scored [0.1, 0.9, 0.5] -> ranked labels [0, 1, 2]
    # list 1: no relevant row -> 1
    labels = np.array([2, 0, 1, 0, 0], float)
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.2])
    offsets = np.array([0, 3, 5])
    dcg = (2 ** 1 - 1) / np.log2(3) + (2 ** 2 - 1) / np.log2(4)
    ideal = (2 ** 2 - 1) / np.log2(2) + (2 ** 1 - 1) / np.log2(3)
    np.testing.assert_allclose(ndcg_at_k(scores, labels, offsets, 3), [dcg / ideal, 1.0])
    np.testing.assert_allclose(ndcg_at_k(scores, labels, offsets, 1), [0.0, 1.0])
    # ties keep the rows' order
    np.testing.assert_allclose(ndcg_at_k(np.zeros(5), labels, offsets, 1), [1.0, 1.0])


def test_recall_and_the_random_floor():
    labels = np.array([1, 0, 1, 0, 0], float)
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.4])
    offsets = np.array([0, 3, 5])
    r = recall_at_k(scores, labels, offsets, 1)
    assert r[0] == 0.5 and np.isnan(r[1])
    assert 0.3 < random_baseline(labels, offsets, recall_at_k, k=1, draws=200) < 0.7
