"""The Δ-weighted pair objective within lists: Δ is the metric's change on swapping, only
preferred-over-less pairs count, padding never does."""
import itertools

import numpy as np
import pytest
import torch

from rankers.losses.lambda_pairs import delta_ndcg, delta_recall, lambda_pair_loss
from rankers.metrics.lists import ndcg_at_k, recall_at_k


def _swapped_metric(metric, scores, labels, i, j, k):
    s = scores.copy()
    s[i], s[j] = s[j], s[i]
    return metric(s, labels, np.array([0, len(s)]), k)[0]


@pytest.mark.parametrize("metric, delta", [(ndcg_at_k, delta_ndcg), (recall_at_k, delta_recall)])
def test_delta_is_the_metric_change_of_a_swap(metric, delta):
    rng = np.random.default_rng(0)
    labels = np.array([3, 0, 1, 2, 0, 1], float)
    scores = rng.random(6)
    k = 3
    d = delta(torch.tensor(scores)[None], torch.tensor(labels)[None], torch.ones(1, 6, dtype=torch.bool), k)[0]
    base = metric(scores, labels, np.array([0, 6]), k)[0]
    for i, j in itertools.combinations(range(6), 2):
        change = abs(_swapped_metric(metric, scores, labels, i, j, k) - base)
        assert float(d[i, j]) == pytest.approx(change, abs=1e-9), (i, j)


def test_only_preferred_pairs_count_and_padding_never():
    scores = torch.tensor([[0.0, 0.0, 5.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])  # the third row is padding
    loss = lambda_pair_loss(scores, labels, mask, delta="none")
    assert float(loss) == pytest.approx(np.log(2.0))  # one pair, s_i - s_j = 0
    loss.backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1] and scores.grad[0, 2] == 0  # push the preferred row up
    hinge = lambda_pair_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool),
                             delta="none", pair_loss="hinge", margin=1.0)
    assert float(hinge) == 0.0
    with pytest.raises(ValueError, match="delta must be one of"):
        lambda_pair_loss(scores, labels, mask, delta="map")
