"""The LightningModule: trains a scorer (a plain nn.Module) with the pairwise objective and
evaluates it over the full catalogue. The scorer is what gets exported, not this class."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from rankers.evaluation import MetricAccumulator, augment_items, augment_queries, augment_repeat
from rankers.losses.objective import PairwiseObjective


REPEAT_GROUP = 64  # users per kernel call when the repeat term widens the vectors by one per user


class RankerModule(pl.LightningModule):
    """Args:
        net: the scorer (TwoTower).
        objective: PairwiseObjective (pair loss, weighting, l1, l2).
        optimizer: partial ``torch.optim`` constructor (Hydra ``_partial_: true``).
        scheduler: optional partial LR scheduler constructor (stepped per epoch).
        ks: cut-offs for the @k metrics; monitored metric is ``val/ndcg@{ks[0]}``.
        num_threads: threads of the C++ core during evaluation (None = torch's).
        encoders: plain-Python vocabulary state, saved into checkpoints for export.
    """

    def __init__(self, net: torch.nn.Module, objective: PairwiseObjective, optimizer: Callable,
                 scheduler: Optional[Callable] = None, ks: Sequence[int] = (10,),
                 num_threads: Optional[int] = None, encoders: Optional[dict] = None):
        super().__init__()
        self.net, self.objective = net, objective
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.ks, self.num_threads = tuple(ks), num_threads
        self.encoders = encoders
        self._acc: Optional[MetricAccumulator] = None
        self._items: Optional[np.ndarray] = None
        self.last_metrics: Dict[str, Dict[str, float]] = {}

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        u = self.net.user_vectors(batch["user_tokens"], batch["user_weights"], batch["history"],
                                  batch["history_weights"])                          # [B, D]
        v, bias = self.net.item_vectors(batch["item_tokens"], batch["item_weights"])  # [K, D], [K]
        s_pos = (u * v[batch["pos_ix"]]).sum(-1) + bias[batch["pos_ix"]]                # [B]
        if "seen_rows" in batch:  # the whole catalogue as negatives
            s_neg = u @ v.T + bias                                                        # [B, N]
            g_neg = torch.zeros_like(s_neg)
            g_neg[batch["seen_rows"], batch["seen_items"]] = batch["seen_grades"]
            mask = (g_neg < batch["pos_grade"][:, None]).to(s_neg.dtype)
        else:
            s_neg = torch.einsum("bd,bmd->bm", u, v[batch["neg_ix"]]) + bias[batch["neg_ix"]]  # [B, M]
            g_neg, mask = batch["neg_grade"], batch["mask"]
        if self.net.repeat is not None:  # the bag leaves the positive out, so only negatives can be in it
            hist, hw = batch["history"], batch["history_weights"]
            if "seen_rows" in batch:
                off = self.net.repeat_offsets(hist, hw)                                   # [B, N]
                s_pos = s_pos + off.gather(1, batch["pos_ix"][:, None])[:, 0]
            else:
                items = batch["items"]
                s_pos = s_pos + self.net.repeat_offsets(hist, hw, items[batch["pos_ix"]][:, None])[:, 0]
                off = self.net.repeat_offsets(hist, hw, items[batch["neg_ix"]])            # [B, M]
            s_neg = s_neg + off
        n_items = self.net.hparams["n_items"]
        loss = self.objective(s_pos, s_neg, batch["pos_grade"], g_neg, mask, batch["weight"], n_items=n_items,
                              user_positives=batch["user_positives"])
        reg = self.objective.regularizer(self.net.parameters())
        total = loss + reg
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(s_pos))
        if self.objective.l1 or self.objective.l2:
            self.log("train/reg", reg, on_step=False, on_epoch=True, batch_size=len(s_pos))
        return total

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.net.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=opt),
                                                   "interval": "epoch"}}

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def item_matrix(self, tokens: torch.Tensor, weights: torch.Tensor, chunk: int = 65536):
        """Item vectors [N, D] and bias [N] of the whole catalogue, in chunks."""
        vs, bs = [], []
        for s in range(0, len(tokens), chunk):
            v, b = self.net.item_vectors(tokens[s:s + chunk], weights[s:s + chunk])
            vs.append(v)
            bs.append(b)
        return torch.cat(vs).numpy(), torch.cat(bs).numpy()

    def _start_eval(self):
        tokens, weights = self.trainer.datamodule.catalogue()
        v, b = self.item_matrix(tokens, weights)
        self._items = augment_items(v, b)
        self._acc = MetricAccumulator(len(v), self.ks)

    def _eval_step(self, batch: Dict[str, Any]):
        u = self.net.user_vectors(batch["user_tokens"], batch["user_weights"], batch["history"],
                                  batch["history_weights"]).numpy()
        q = augment_queries(u)
        if self.net.repeat is None:
            self._acc.add(q, self._items, batch["targets"], batch["exclude"], self.num_threads)
            return
        # The repeat term is not a dot product over the catalogue, but over a few users it is:
        # ``augment_repeat`` appends one coordinate per user. Small groups keep the widening cheap.
        member = self.net.bag_membership(batch["history"], batch["history_weights"])
        for s in range(0, len(q), REPEAT_GROUP):
            qg, items = augment_repeat(q[s:s + REPEAT_GROUP], self._items, member[s:s + REPEAT_GROUP].numpy(),
                                       float(self.net.repeat))
            self._acc.add(qg, items, batch["targets"][s:s + REPEAT_GROUP], batch["exclude"][s:s + REPEAT_GROUP],
                          self.num_threads)

    def _end_eval(self, stage: str):
        res = self._acc.result()
        users = res.pop("users")
        metrics = {f"{stage}/{k}": v for k, v in res.items()}
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"non-finite {stage} metrics {bad} at epoch {self.current_epoch}")
        for k, v in metrics.items():
            self.log(k, v, prog_bar=k == f"{stage}/ndcg@{self.ks[0]}", batch_size=int(users))
        self.last_metrics[stage] = metrics
        self._acc, self._items = None, None

    def on_validation_epoch_start(self):
        self._start_eval()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._end_eval("val")

    def on_test_epoch_start(self):
        self._start_eval()

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self._end_eval("test")

    # -- checkpoints carry what export needs ----------------------------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["rankers"] = {"net_hparams": dict(self.net.hparams), "encoders": self.encoders,
                                 "objective": vars(self.objective), "ks": list(self.ks)}
