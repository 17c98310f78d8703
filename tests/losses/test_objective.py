import numpy as np
import pytest
import torch

from rankers.losses import PairwiseObjective as _Objective
from rankers.losses import elastic_net, pairwise_loss
from tests.conftest import config_defaults


def PairwiseObjective(**overrides):
    """The objective as rankers/conf/loss/pairwise.yaml configures it, with ``overrides``."""
    return _Objective(**{**config_defaults("loss", "pairwise"), **overrides})


def test_objective_is_the_normalised_weighted_sum_of_pair_losses():
    g = torch.Generator().manual_seed(0)
    s_pos, s_neg = torch.randn(5, generator=g), torch.randn(5, 4, generator=g)
    g_pos, g_neg = torch.full((5,), 3.0), torch.randint(0, 2, (5, 4), generator=g).float()
    mask = torch.ones(5, 4)
    mask[0, 1] = 0
    row_w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    out = pairwise_loss(s_pos, s_neg, g_pos, g_neg, mask, row_w, "hinge", "graded")
    num = den = 0.0
    for b in range(5):
        for j in range(4):
            w = max(0.0, (2 ** 3 - 1) - (2 ** g_neg[b, j].item() - 1)) * mask[b, j].item() * row_w[b].item()
            num += w * max(0.0, 1.0 - (s_pos[b] - s_neg[b, j]).item())
            den += w
    assert out.item() == pytest.approx(num / den, rel=1e-5)


def test_masked_pairs_and_zero_weight_rows_do_not_count():
    s_pos, s_neg = torch.zeros(2), torch.tensor([[5.0, -5.0], [100.0, 100.0]])
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    out = pairwise_loss(s_pos, s_neg, torch.ones(2), torch.zeros(2, 2), mask, torch.tensor([1.0, 0.0]))
    assert out.item() == pytest.approx(np.log1p(np.exp(-5.0)), rel=1e-5)


def test_elastic_net():
    p = [torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])]
    assert elastic_net(p, l1=0.1, l2=0.01).item() == pytest.approx(0.1 * 6 + 0.01 * 14)
    assert elastic_net(p).item() == 0.0


def test_objective_validates_its_config():
    with pytest.raises(ValueError, match="loss.l1"):
        PairwiseObjective(l1=-1.0)
    with pytest.raises(ValueError, match="loss.weighting"):
        PairwiseObjective(weighting="nope")


def test_softmax_loss_is_the_cross_entropy_of_each_positive_against_its_pairs():
    g = torch.Generator().manual_seed(1)
    s_pos, s_neg = torch.randn(4, generator=g), torch.randn(4, 6, generator=g)
    mask = torch.ones(4, 6)
    mask[1, :3] = 0          # fewer pairs in one row
    mask[3] = 0              # a row without pairs does not count
    row_w = torch.tensor([1.0, 2.0, 0.5, 7.0])
    out = pairwise_loss(s_pos, s_neg, torch.ones(4), torch.zeros(4, 6), mask, row_w, "softmax", "uniform",
                        temperature=0.5)
    num = den = 0.0
    for b in range(3):
        logits = torch.cat([s_pos[b:b + 1], s_neg[b][mask[b] > 0]]) / 0.5
        ce = -torch.log_softmax(logits, 0)[0].item()  # the positive is class 0
        num += row_w[b].item() * ce
        den += row_w[b].item()
    assert out.item() == pytest.approx(num / den, rel=1e-5)


def test_softmax_loss_weights_pairs_inside_the_row():
    # A pair weight w_j counts negative j w_j times in the partition function.
    s_pos, s_neg = torch.tensor([0.3]), torch.tensor([[0.1, -0.4]])
    w2 = pairwise_loss(s_pos, s_neg, torch.full((1,), 3.0), torch.tensor([[1.0, 2.0]]), torch.ones(1, 2),
                       pair_loss="softmax", weighting="graded")  # gains 7 - 1 = 6 and 7 - 3 = 4
    expect = np.log1p(6 * np.exp(0.1 - 0.3) + 4 * np.exp(-0.4 - 0.3))
    assert w2.item() == pytest.approx(expect, rel=1e-5)


def test_user_power_weighs_rows_by_their_users_count_of_positives():
    g = torch.Generator().manual_seed(2)
    s_pos, s_neg = torch.randn(3, generator=g), torch.randn(3, 5, generator=g)
    args = (s_pos, s_neg, torch.ones(3), torch.zeros(3, 5), torch.ones(3, 5))
    n_pos = torch.tensor([1.0, 16.0, 4.0])
    row_w = torch.tensor([1.0, 1.0, 2.0])
    for p in (0.0, 0.25, 1.0):
        obj = PairwiseObjective(pair_loss="hinge", user_power=p)
        got = obj(*args, row_weight=row_w, user_positives=n_pos)
        assert got.item() == pytest.approx(pairwise_loss(*args, row_w * n_pos ** -p, "hinge").item(), rel=1e-6)
    with pytest.raises(ValueError, match="loss.user_power"):
        PairwiseObjective(user_power=1.5)
