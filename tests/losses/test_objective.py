import numpy as np
import pytest
import torch

from rankers.losses import PairwiseObjective, elastic_net, pairwise_loss


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
