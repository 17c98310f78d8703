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

The learning rate of FOBOS, PSGD and TGD is η_t = lr / √t (``decay=True``) or lr.

**Lazy updates.** With a sparse gradient (``SparseLinear(sparse_grad=True)``: the paper's
regime of 10⁵-10⁶ one-hot dimensions, where a list touches a few dozen) FOBOS, RDA and PSGD
update only the touched weights, in time linear in the list's features. What every other
weight would have undergone meanwhile (RDA's shrinking by t, FOBOS's and PSGD's decay and
truncation, PSGD's pruning) has a closed form, applied when the weight is next read:
``prepare(index)`` brings the weights a batch reads up to date before its forward,
``sync()`` brings all of them (before evaluation and checkpoints). The result equals the
dense update's up to rounding (tests check it). TGD takes a sparse gradient densely.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim import Optimizer

REBASE = 30.0  # lazy accumulators are re-based (all weights synced) when exp(-log-decay) passes e^30


def _check(lr: float, l1: float, l2: float) -> None:
    if lr <= 0 or l1 < 0 or l2 < 0:
        raise ValueError(f"need lr > 0, l1 >= 0, l2 >= 0; got {lr}, {l1}, {l2}")


def _eta(group: dict, t: int) -> float:
    return group["lr"] / math.sqrt(t) if group["decay"] else group["lr"]


class _Elastic(Optimizer):
    """The step loop of these optimisers: per parameter, count the step, then ``_update`` (a
    dense gradient) or ``_lazy_step`` (a sparse one: only its indices are updated)."""

    lazy = True  # whether a sparse gradient is applied lazily (else densified)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if p.grad.is_sparse and self.lazy:
                    grad = p.grad.coalesce()
                    st["step"] = st.get("step", 0) + 1
                    self._lazy_step(p, g, st, grad.indices()[0], grad.values())
                    continue
                grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
                if "at" in st:  # a dense step after lazy ones: every weight current first
                    self._sync_param(p, g, st)
                st["step"] = st.get("step", 0) + 1
                self._update(p, g, st, grad)
        return loss

    @torch.no_grad()
    def prepare(self, index: torch.Tensor) -> None:
        """Bring the weights at ``index`` (feature indices, repeats allowed) up to date: call
        before a forward that reads them, after lazy steps."""
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state[p]
                if "at" in st:
                    self._catch_up(p, g, st, torch.unique(index))

    @torch.no_grad()
    def sync(self) -> None:
        """Bring every weight up to date (before evaluating, saving or reading the weights)."""
        for g in self.param_groups:
            for p in g["params"]:
                if "at" in self.state[p]:
                    self._sync_param(p, g, self.state[p])

    def _sync_param(self, p: torch.Tensor, g: dict, st: dict) -> None:
        self._catch_up(p, g, st, torch.arange(p.numel()))

    def _lazy_state(self, p: torch.Tensor, st: dict, **scalars) -> None:
        if "at" not in st:
            st["at"] = torch.zeros(p.numel(), dtype=torch.float64)  # the log-decay at which a weight is current
            st.update(scalars)

    def _update(self, p: torch.Tensor, g: dict, st: dict, grad: torch.Tensor) -> None:
        raise NotImplementedError

    def _lazy_step(self, p: torch.Tensor, g: dict, st: dict, idx: torch.Tensor, val: torch.Tensor) -> None:
        raise NotImplementedError

    def _catch_up(self, p: torch.Tensor, g: dict, st: dict, idx: torch.Tensor) -> None:
        raise NotImplementedError


def _shrink(w: torch.Tensor, by) -> torch.Tensor:
    """sign(w) max(|w| - by, 0)."""
    return torch.sign(w) * (w.abs() - by).clamp_min(0.0)


class FOBOS(_Elastic):
    """Lazily: with a_s = 1/(1 + η_s λ2), L(t) = Σ log a_s and K(t) = Σ η_s λ1 e^(-L(s-1)), a
    weight untouched since step τ is sign(w) max(0, |w_τ| e^(-L(τ)) - (K(t) - K(τ))) e^(L(t))."""

    def __init__(self, params: Iterable, lr: float = 0.1, l1: float = 0.0, l2: float = 0.0, decay: bool = True):
        _check(lr, l1, l2)
        super().__init__(params, dict(lr=lr, l1=l1, l2=l2, decay=decay))

    def _update(self, p: torch.Tensor, g: dict, st: dict, grad: torch.Tensor) -> None:
        eta = _eta(g, st["step"])
        p.add_(grad, alpha=-eta)
        p.copy_(_shrink(p, eta * g["l1"]) / (1.0 + eta * g["l2"]))

    def _catch_up(self, p, g, st, idx) -> None:
        w = p[idx].to(torch.float64)
        v = _shrink(w * torch.exp(-st["at"][idx]), st["K"] - st["K_at"][idx])
        p[idx] = (v * math.exp(st["L"])).to(p.dtype)
        st["at"][idx] = st["L"]
        st["K_at"][idx] = st["K"]

    def _lazy_step(self, p, g, st, idx, val) -> None:
        if "at" not in st:
            self._lazy_state(p, st, L=0.0, K=0.0)
            st["K_at"] = torch.zeros(p.numel(), dtype=torch.float64)
        self._catch_up(p, g, st, idx)  # current at t - 1
        eta = _eta(g, st["step"])
        w = p[idx] - eta * val
        p[idx] = _shrink(w, eta * g["l1"]) / (1.0 + eta * g["l2"])
        st["K"] += eta * g["l1"] * math.exp(-st["L"])
        st["L"] -= math.log1p(eta * g["l2"])
        st["at"][idx] = st["L"]
        st["K_at"][idx] = st["K"]
        if -st["L"] > REBASE:
            self._sync_param(p, g, st)
            st["L"], st["K"] = 0.0, 0.0
            st["at"].zero_()
            st["K_at"].zero_()


class RDA(_Elastic):
    """``gamma``: the strength of the proximal term γ/√t (larger: smaller steps). The weights
    are a function of the gradients' running sum and t alone, so lazily a weight is computed
    from its sum when read."""

    def __init__(self, params: Iterable, gamma: float = 10.0, l1: float = 0.0, l2: float = 0.0):
        _check(gamma, l1, l2)
        super().__init__(params, dict(gamma=gamma, l1=l1, l2=l2))

    @staticmethod
    def _weights(grad_sum: torch.Tensor, g: dict, t: int) -> torch.Tensor:
        return -_shrink(grad_sum / t, g["l1"]) / (g["l2"] + g["gamma"] / math.sqrt(t))

    def _update(self, p: torch.Tensor, g: dict, st: dict, grad: torch.Tensor) -> None:
        total = st.setdefault("grad_sum", torch.zeros(p.numel(), dtype=torch.float64))
        total.add_(grad.reshape(-1))
        p.copy_(self._weights(total, g, st["step"]).view_as(p))

    def _catch_up(self, p, g, st, idx) -> None:
        if st.get("step", 0):
            p[idx] = self._weights(st["grad_sum"][idx], g, st["step"]).to(p.dtype)

    def _lazy_step(self, p, g, st, idx, val) -> None:
        self._lazy_state(p, st)
        st.setdefault("grad_sum", torch.zeros(p.numel(), dtype=torch.float64))
        st["grad_sum"].index_add_(0, idx, val.to(torch.float64))
        p[idx] = self._weights(st["grad_sum"][idx], g, st["step"]).to(p.dtype)


class _Periodic(_Elastic):
    """SGD with L2, made sparse by a step (``_sparsify``) taken every ``every`` updates;
    ``finish()`` takes it once more, so that a model ends sparse whatever its last update was
    (called at the end of each pass)."""

    def __init__(self, params: Iterable, threshold: float, every: int, **defaults):
        if threshold < 0 or every < 1:
            raise ValueError(f"need threshold >= 0 and every >= 1; got {threshold}, {every}")
        super().__init__(params, dict(threshold=threshold, every=every, **defaults))

    def _update(self, p: torch.Tensor, g: dict, st: dict, grad: torch.Tensor) -> None:
        t = st["step"]
        p.add_(grad + g["l2"] * p, alpha=-_eta(g, t))
        if t % g["every"] == 0:
            self._sparsify(p, g, t)

    @torch.no_grad()
    def finish(self) -> None:
        self.sync()
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

    # Lazily: with M(t) = Σ log(1 - η_s λ2), a weight untouched since step τ is w_τ e^(M(t) - M(τ)),
    # or 0 if it was below the threshold at the last pruning step after τ (it only shrinks).
    def _catch_up(self, p, g, st, idx) -> None:
        w = p[idx].to(torch.float64)
        pruned = (st["at_step"][idx] < st["prune_step"]) & \
            ((w * torch.exp(st["M_prune"] - st["at"][idx])).abs() < g["threshold"])
        w = torch.where(pruned, torch.zeros_like(w), w * torch.exp(st["M"] - st["at"][idx]))
        p[idx] = w.to(p.dtype)
        st["at"][idx] = st["M"]
        st["at_step"][idx] = st["step_now"]

    def _lazy_step(self, p, g, st, idx, val) -> None:
        if "at" not in st:
            self._lazy_state(p, st, M=0.0, M_prune=0.0, prune_step=0, step_now=st["step"] - 1)
            st["at_step"] = torch.full((p.numel(),), st["step"] - 1, dtype=torch.int64)
        self._catch_up(p, g, st, idx)  # current at t - 1
        t = st["step"]
        eta = _eta(g, t)
        if eta * g["l2"] >= 1.0:
            raise ValueError(f"PSGD: lr x l2 = {eta * g['l2']} >= 1 flips the weights' signs; lower lr or l2")
        w = p[idx] * (1.0 - eta * g["l2"]) - eta * val
        st["M"] += math.log1p(-eta * g["l2"])
        st["step_now"] = t
        if t % g["every"] == 0:
            w = w.masked_fill(w.abs() < g["threshold"], 0.0)
            st["M_prune"], st["prune_step"] = st["M"], t
        p[idx] = w
        st["at"][idx] = st["M"]
        st["at_step"][idx] = t
        if -st["M"] > REBASE:
            self._sync_param(p, g, st)
            st["at"].zero_()
            st["M"] = st["M_prune"] = 0.0


class TGD(_Periodic):
    lazy = False  # truncation only below the threshold has no simple closed form: densified

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
