"""The paper's sparse online optimisers as ``torch.optim`` optimisers (Freno et al., KDD 2015,
Section 4), each minimising a loss plus λ1‖w‖₁ + ½λ2‖w‖² and leaving exact zeros:

- ``FOBOS`` (Duchi & Singer 2009): a gradient step, then the elastic-net proximal step
  w ← sign(w) max(|w| - ηλ1, 0) / (1 + ηλ2).
- ``RDA`` (ℓ1-regularised dual averaging, Xiao 2010): from the running average ḡ of all
  gradients, w = -(ḡ - λ1 sign(ḡ)) / (λ2 + γ/√t) where |ḡ| > λ1, else 0.
- ``PSGD`` (SGD with L2, pruned): w ← w - η(g + λ2 w); every ``k`` steps weights with
  |w| < θ are set to 0 (the paper's naive pruning), and once more at the end of each pass
  (``finish``).
- ``TGD`` (truncated gradient, Langford, Li & Zhang 2009): w ← w - η(g + λ2 w); every ``k``
  steps weights with |w| <= θ move toward 0 by kηλ1, and stop there.

The learning rate of FOBOS, PSGD and TGD is η_t = lr / √t (``decay=True``) or lr. The updates
are dense over w: fine for the thousands to a million features of these models on CPU.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim import Optimizer


def _check(lr: float, l1: float, l2: float) -> None:
    if lr <= 0 or l1 < 0 or l2 < 0:
        raise ValueError(f"need lr > 0, l1 >= 0, l2 >= 0; got {lr}, {l1}, {l2}")


def _eta(group: dict, t: int) -> float:
    return group["lr"] / math.sqrt(t) if group["decay"] else group["lr"]


class _Elastic(Optimizer):
    """The step loop of these optimisers: per parameter, count the step, then ``_update``."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                st["step"] = st.get("step", 0) + 1
                self._update(p, g, st)
        return loss

    def _update(self, p: torch.Tensor, g: dict, st: dict) -> None:
        raise NotImplementedError


class FOBOS(_Elastic):
    def __init__(self, params: Iterable, lr: float = 0.1, l1: float = 0.0, l2: float = 0.0, decay: bool = True):
        _check(lr, l1, l2)
        super().__init__(params, dict(lr=lr, l1=l1, l2=l2, decay=decay))

    def _update(self, p: torch.Tensor, g: dict, st: dict) -> None:
        eta = _eta(g, st["step"])
        p.add_(p.grad, alpha=-eta)
        p.copy_(torch.sign(p) * (p.abs() - eta * g["l1"]).clamp_min(0.0) / (1.0 + eta * g["l2"]))


class RDA(_Elastic):
    """``gamma``: the strength of the proximal term γ/√t (larger: smaller steps)."""

    def __init__(self, params: Iterable, gamma: float = 10.0, l1: float = 0.0, l2: float = 0.0):
        _check(gamma, l1, l2)
        super().__init__(params, dict(gamma=gamma, l1=l1, l2=l2))

    def _update(self, p: torch.Tensor, g: dict, st: dict) -> None:
        t = st["step"]
        avg = st.setdefault("grad_avg", torch.zeros_like(p))
        avg.mul_((t - 1) / t).add_(p.grad, alpha=1.0 / t)
        shrunk = torch.sign(avg) * (avg.abs() - g["l1"]).clamp_min(0.0)
        p.copy_(-shrunk / (g["l2"] + g["gamma"] / math.sqrt(t)))


class _Periodic(_Elastic):
    """SGD with L2, made sparse by a step (``_sparsify``) taken every ``every`` updates;
    ``finish()`` takes it once more, so that a model ends sparse whatever its last update was
    (called at the end of each pass)."""

    def __init__(self, params: Iterable, threshold: float, every: int, **defaults):
        if threshold < 0 or every < 1:
            raise ValueError(f"need threshold >= 0 and every >= 1; got {threshold}, {every}")
        super().__init__(params, dict(threshold=threshold, every=every, **defaults))

    def _update(self, p: torch.Tensor, g: dict, st: dict) -> None:
        t = st["step"]
        p.add_(p.grad + g["l2"] * p, alpha=-_eta(g, t))
        if t % g["every"] == 0:
            self._sparsify(p, g, t)

    @torch.no_grad()
    def finish(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if self.state[p].get("step"):
                    self._sparsify(p, g, self.state[p]["step"])

    @staticmethod
    def _sparsify(p: torch.Tensor, g: dict, t: int) -> None:
        raise NotImplementedError


class PSGD(_Periodic):
    def __init__(self, params: Iterable, lr: float = 0.1, l2: float = 0.0, threshold: float = 0.0, every: int = 10,
                 decay: bool = True):
        _check(lr, 0.0, l2)
        super().__init__(params, threshold, every, lr=lr, l2=l2, decay=decay)

    @staticmethod
    def _sparsify(p: torch.Tensor, g: dict, t: int) -> None:
        p.masked_fill_(p.abs() < g["threshold"], 0.0)


class TGD(_Periodic):
    def __init__(self, params: Iterable, lr: float = 0.1, l1: float = 0.0, l2: float = 0.0, threshold: float = 1.0,
                 every: int = 10, decay: bool = True):
        _check(lr, l1, l2)
        super().__init__(params, threshold, every, lr=lr, l1=l1, l2=l2, decay=decay)

    @staticmethod
    def _sparsify(p: torch.Tensor, g: dict, t: int) -> None:
        alpha = g["every"] * _eta(g, t) * g["l1"]
        small = p.abs() <= g["threshold"]
        p.copy_(torch.where(small, torch.sign(p) * (p.abs() - alpha).clamp_min(0.0), p))


OPTIMIZERS = {"fobos": FOBOS, "rda": RDA, "psgd": PSGD, "tgd": TGD}
