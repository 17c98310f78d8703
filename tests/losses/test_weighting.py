import math

import pytest
import torch

from rankers.losses import weighting as W


def _rand(B=6, M=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    s_pos = torch.randn(B, generator=g, dtype=torch.float64)
    s_neg = torch.randn(B, M, generator=g, dtype=torch.float64)
    g_pos = torch.randint(2, 4, (B,), generator=g).double()
    g_neg = torch.randint(0, 2, (B, M), generator=g).double()
    mask = (torch.rand(B, M, generator=g) > 0.2).double()
    return s_pos, s_neg, g_pos, g_neg, mask


def test_uniform_is_the_mask():
    args = _rand()
    torch.testing.assert_close(W.uniform(*args), args[-1])


def test_graded_is_the_gain_difference():
    s_pos, s_neg, g_pos, g_neg, mask = _rand()
    w = W.graded(s_pos, s_neg, g_pos, g_neg, mask)
    for b in range(len(s_pos)):
        for j in range(s_neg.shape[1]):
            ref = max(0.0, (2 ** g_pos[b].item() - 1) - (2 ** g_neg[b, j].item() - 1)) * mask[b, j].item()
            assert w[b, j].item() == pytest.approx(ref)


def _ndcg(scores, gains):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    dcg = sum(gains[i] / math.log2(r + 2) for r, i in enumerate(order))
    ideal = sorted(gains, reverse=True)
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg


def test_lambda_is_the_ndcg_change_of_swapping_the_pair():
    s_pos, s_neg, g_pos, g_neg, mask = _rand(B=8, M=6, seed=3)
    mask = torch.ones_like(mask)
    w = W.lambda_ndcg(s_pos, s_neg, g_pos, g_neg, mask)
    for b in range(len(s_pos)):
        scores = [s_pos[b].item()] + s_neg[b].tolist()
        gains = [2 ** g_pos[b].item() - 1] + [2 ** g - 1 for g in g_neg[b].tolist()]
        base = _ndcg(scores, gains)
        for j in range(s_neg.shape[1]):
            swapped = list(scores)
            swapped[0], swapped[j + 1] = swapped[j + 1], swapped[0]
            assert w[b, j].item() == pytest.approx(abs(_ndcg(swapped, gains) - base), abs=1e-9)


def test_lambda_ignores_masked_negatives():
    s_pos, s_neg, g_pos, g_neg, mask = _rand(B=4, M=6, seed=5)
    mask[:, 3:] = 0
    w = W.lambda_ndcg(s_pos, s_neg, g_pos, g_neg, mask)
    assert (w[:, 3:] == 0).all()
    w_small = W.lambda_ndcg(s_pos, s_neg[:, :3], g_pos, g_neg[:, :3], mask[:, :3])
    torch.testing.assert_close(w[:, :3], w_small)


def test_warp_spreads_the_rank_loss_over_violators():
    n_items, margin = 1000, 1.0
    s_pos, s_neg, g_pos, g_neg, mask = _rand(B=10, M=7, seed=7)
    w = W.warp(s_pos, s_neg, g_pos, g_neg, mask, n_items=n_items, margin=margin)
    for b in range(len(s_pos)):
        valid = [j for j in range(7) if mask[b, j] > 0]
        viol = [j for j in valid if s_neg[b, j] + margin > s_pos[b]]
        rank = math.floor((n_items - 1) * len(viol) / max(len(valid), 1))
        phi = W.harmonic_exact(rank)
        for j in range(7):
            ref = phi / len(viol) if j in viol else 0.0
            assert w[b, j].item() == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_warp_weights_nothing_when_no_pair_violates():
    s_pos = torch.tensor([10.0])
    s_neg = torch.tensor([[0.0, 1.0, 2.0]])
    w = W.warp(s_pos, s_neg, torch.ones(1), torch.zeros(1, 3), torch.ones(1, 3), n_items=50)
    assert (w == 0).all()


def test_weights_carry_no_gradient():
    s_pos, s_neg, g_pos, g_neg, mask = _rand()
    s_pos.requires_grad_(True)
    for fn in W.WEIGHTINGS.values():
        assert not fn(s_pos, s_neg, g_pos, g_neg, mask, n_items=100).requires_grad


def test_unknown_weighting_is_a_clear_error():
    with pytest.raises(ValueError, match="loss.weighting"):
        W.get_weighting("softmax")


def test_adversarial_is_a_softmax_over_valid_negatives_with_mean_one():
    s_pos, s_neg, g_pos, g_neg, mask = _rand(B=5, M=6, seed=11)
    w = W.adversarial(s_pos, s_neg, g_pos, g_neg, mask, temperature=0.5)
    for b in range(5):
        valid = [j for j in range(6) if mask[b, j] > 0]
        e = {j: math.exp(s_neg[b, j].item() / 0.5) for j in valid}
        z = sum(e.values())
        for j in range(6):
            ref = e[j] / z * len(valid) if j in valid else 0.0
            assert w[b, j].item() == pytest.approx(ref, rel=1e-6)
    hot = W.adversarial(s_pos, s_neg, g_pos, g_neg, torch.ones_like(mask), temperature=1e6)
    torch.testing.assert_close(hot, torch.ones_like(mask), rtol=1e-4, atol=1e-4)  # T -> inf is uniform
    none = W.adversarial(s_pos, s_neg, g_pos, g_neg, torch.zeros_like(mask))
    assert (none == 0).all()
