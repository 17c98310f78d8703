"""The elastic-net optimisers: each update rule by hand, and exact zeros where the paper's
methods leave them."""
import math

import pytest
import torch

from rankers.training.proximal import FOBOS, PSGD, RDA, TGD


def _step(opt_cls, w0, grad, **kw):
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = opt_cls([w], **kw)
    w.grad = torch.tensor(grad)
    opt.step()
    return w.detach(), opt


def test_fobos_is_a_gradient_step_then_the_elastic_net_prox():
    w, _ = _step(FOBOS, [1.0, 0.05, -1.0], [0.0, 0.0, 0.5], lr=0.1, l1=1.0, l2=1.0, decay=False)
    # [1, 0.05, -1.05] -> shrink by 0.1, divide by 1.1
    torch.testing.assert_close(w, torch.tensor([0.9 / 1.1, 0.0, -0.95 / 1.1]))


def test_rda_is_the_closed_form_on_the_average_gradient():
    w = torch.nn.Parameter(torch.zeros(3))
    opt = RDA([w], gamma=2.0, l1=0.5, l2=0.0)
    for g in ([1.0, 0.2, -2.0], [1.0, 0.6, -2.0]):
        w.grad = torch.tensor(g)
        opt.step()
    avg = torch.tensor([1.0, 0.4, -2.0])
    expected = -(torch.sign(avg) * (avg.abs() - 0.5).clamp_min(0)) / (2.0 / math.sqrt(2))
    torch.testing.assert_close(w.detach(), expected)
    assert w[1] == 0  # |average gradient| below l1: exactly 0


def test_psgd_prunes_small_weights_every_k_steps():
    w = torch.nn.Parameter(torch.tensor([0.5, 0.05]))
    opt = PSGD([w], lr=0.1, threshold=0.1, every=2, decay=False)
    w.grad = torch.zeros(2)
    opt.step()
    assert float(w[1]) == pytest.approx(0.05)  # not yet
    opt.step()
    assert float(w[1]) == 0 and float(w[0]) == pytest.approx(0.5)


def test_tgd_truncates_toward_zero_only_below_the_threshold():
    w = torch.nn.Parameter(torch.tensor([2.0, 0.3, -0.02]))
    opt = TGD([w], lr=0.1, l1=1.0, threshold=1.0, every=1, decay=False)
    w.grad = torch.zeros(3)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([2.0, 0.2, 0.0]))


@pytest.mark.parametrize("cls, kw", [(FOBOS, {"lr": -1.0}), (RDA, {"gamma": 0.0}), (PSGD, {"every": 0}),
                                     (TGD, {"threshold": -1.0})])
def test_bad_settings_are_refused(cls, kw):
    with pytest.raises(ValueError):
        cls([torch.nn.Parameter(torch.zeros(1))], **kw)


def test_finish_leaves_a_periodic_optimiser_sparse_whatever_its_last_step():
    w = torch.nn.Parameter(torch.tensor([0.5, 0.05, 0.0]))
    opt = PSGD([w], lr=0.1, threshold=0.1, every=100, decay=False)
    w.grad = torch.tensor([0.0, 0.0, -0.2])  # regrows the third weight to 0.02
    opt.step()
    assert float(w[2]) > 0
    opt.finish()
    assert w.detach().tolist() == [0.5, 0.0, 0.0]


@pytest.mark.parametrize("cls, kw", [
    (RDA, dict(gamma=2.0, l1=0.01, l2=0.01)),
    (FOBOS, dict(lr=0.5, l1=0.01, l2=0.05)),
    (FOBOS, dict(lr=0.5, l1=0.002, l2=0.5, decay=False)),  # decays past e^30: the accumulators re-base
    (PSGD, dict(lr=0.5, l2=0.05, threshold=0.05, every=3)),
    (PSGD, dict(lr=0.5, l2=0.5, threshold=0.01, every=4, decay=False)),  # re-bases too
    (TGD, dict(lr=0.5, l1=0.05, l2=0.01, threshold=0.5, every=3)),  # sparse gradients densified
])
def test_lazy_updates_on_sparse_gradients_equal_the_dense_ones(cls, kw):
    from rankers.model.linear import SparseLinear

    dense, lazy = SparseLinear(50), SparseLinear(50, sparse_grad=True)
    od, ol = cls(dense.parameters(), **kw), cls(lazy.parameters(), **kw)
    gen = torch.Generator().manual_seed(1)
    for step in range(200):
        idx = torch.randint(0, 50, (12,), generator=gen)  # 12 of 50 features per step, repeats included
        val, target = torch.rand(12, generator=gen), torch.randn(4, generator=gen)
        for m, o in ((dense, od), (lazy, ol)):
            o.zero_grad()
            o.prepare(idx)  # a no-op for dense state
            ((m(idx, val, torch.arange(12) // 3, 4) - target) ** 2).sum().backward()
            o.step()
        assert lazy.weight.grad.is_sparse and not dense.weight.grad.is_sparse
        if step % 50 == 49:
            ol.prepare(idx)
            assert torch.allclose(lazy.weight[idx], dense.weight[idx], atol=2e-6)
    if hasattr(ol, "finish"):
        od.finish()
        ol.finish()
    ol.sync()
    assert torch.allclose(lazy.weight, dense.weight, atol=2e-6)
    assert lazy.nonzeros() == dense.nonzeros() and (cls is FOBOS or dense.nonzeros() < 50)
