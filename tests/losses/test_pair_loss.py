import math

import pytest
import torch

from rankers.losses import hinge, logistic
from rankers.losses.pair_loss import get_pair_loss


def test_logistic_matches_log1p_exp_and_is_stable_at_extremes():
    d = torch.tensor([-50.0, -1.0, 0.0, 2.0, 80.0], dtype=torch.float64)
    ref = torch.tensor([math.log1p(math.exp(-x)) if x > -30 else -x for x in d.tolist()], dtype=torch.float64)
    torch.testing.assert_close(logistic(d), ref)
    big = torch.tensor([1e4, -1e4])
    out = logistic(big)
    assert torch.isfinite(out).all() and out[0] == 0 and out[1] == pytest.approx(1e4)


def test_hinge_is_zero_past_the_margin():
    d = torch.tensor([-1.0, 0.0, 0.5, 1.0, 3.0])
    torch.testing.assert_close(hinge(d), torch.tensor([2.0, 1.0, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(hinge(d, margin=0.5), torch.tensor([1.5, 0.5, 0.0, 0.0, 0.0]))


def test_gradients_push_the_positive_up():
    d = torch.tensor([0.3], requires_grad=True)
    logistic(d).sum().backward()
    assert d.grad.item() < 0  # increasing the difference lowers the loss


def test_unknown_pair_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="loss.pair_loss"):
        get_pair_loss("squared")
