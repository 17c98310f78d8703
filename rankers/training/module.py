"""The LightningModule: trains a TwoTower (a plain nn.Module) with the pairwise objective and
evaluates it over the full catalogue. The TwoTower is what gets exported, not this class."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from rankers.losses.objective import PairwiseObjective
from rankers.model import TwoTower, UserInputs
from rankers.training.batches import CatalogueNegatives, EvalBatch, PairBatch
from rankers.training.evaluation import MetricAccumulator


class RankerModule(pl.LightningModule):
    """Args:
        net: the TwoTower.
        objective: PairwiseObjective (pair loss, weighting, l1, l2).
        optimizer: partial ``torch.optim`` constructor (Hydra ``_partial_: true``).
        scheduler: optional partial LR scheduler constructor (stepped per epoch).
        ks: cut-offs of the @k metrics. monitor: the metric shown in the progress bar
            (``eval.monitor``, e.g. ``val/ndcg@10``; checkpoints and early stopping use it too).
        num_threads: threads of the C++ core during evaluation (None = torch's).
        bundle: what export needs besides the weights (``ExportBundle.state()``), saved in checkpoints.
    """

    def __init__(self, net: TwoTower, objective: PairwiseObjective, optimizer: Callable,
                 scheduler: Optional[Callable], ks: Sequence[int], monitor: str,
                 num_threads: Optional[int] = None, bundle: Optional[dict] = None):
        super().__init__()
        self.net, self.objective = net, objective
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.ks, self.monitor, self.num_threads = tuple(ks), monitor, num_threads
        self.bundle = bundle
        self._acc: Optional[MetricAccumulator] = None
        self._items: Optional[np.ndarray] = None
        self.last_metrics: Dict[str, Dict[str, float]] = {}
        self.last_errors: Dict[str, Dict[str, float]] = {}  # stage -> metric -> standard error
        self.rows_trained = 0  # positives trained on by this process (rows/s in benchmarks)
        # a warm start's carried optimiser state: parameter index -> state (rankers.training.warm)
        self.initial_optimizer_state: Optional[Dict[int, dict]] = None

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        # R rows (users), P positives: each row's scores are computed once for all its positives
        net, users, neg = self.net, batch.users, batch.negatives
        u = net.user_vectors(users)                                                  # [R, D]
        v, b = net.item_vectors(batch.item_tokens, batch.item_weights, batch.items)  # [K, D], [K]
        extra, col_weight = None, None
        if isinstance(neg, CatalogueNegatives):  # every item a column: K = N
            scores = net.score_catalogue(users, u, v, b)                             # [R, N]
            s_pos = scores[batch.pos_row, batch.pos]
        else:
            at = UserInputs(*(t[batch.pos_row] for t in users))  # each positive's user row
            s = net.score_items(at, u[batch.pos_row], v, b, batch.items,
                                torch.cat([batch.pos[:, None], neg.index], 1))       # [P, 1 + M]
            s_pos = s[:, 0]
            if neg.index.shape[1]:
                extra = (s[:, 1:], neg.grade, neg.mask)
            # the batch's shared negatives, one matrix product: [R, S]
            scores = net.score_shared(users, u, v, b, batch.items, neg.shared) if len(neg.shared) else None
            col_weight = neg.shared_weight if scores is not None else None
        loss = self.objective.rows(scores, s_pos, batch.pos_row, batch.pos_grade, neg.graded(), batch.weight,
                                   n_items=net.n_items, user_positives=batch.user_positives, extra=extra,
                                   col_weight=col_weight)
        reg = self.objective.regularizer(net.parameters())
        self.rows_trained += len(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch))
        if self.objective.l1 or self.objective.l2:
            self.log("train/reg", reg, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss + reg

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.net.parameters())
        if self.initial_optimizer_state:
            params = list(self.net.parameters())
            for i, st in self.initial_optimizer_state.items():
                opt.state[params[i]] = st
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=opt),
                                                   "interval": "epoch"}}

    # -- evaluation -----------------------------------------------------------------------
    # The C++ core ranks the Scorer's dense part as one inner product ([u, 1] . [v, b]) and
    # adds its sparse terms as per-query score offsets.
    def _start_eval(self):
        v, b = self.net.catalogue_table(*self.trainer.datamodule.catalogue())
        self._items = self.net.scorer.dense_items(v, b).numpy()
        self._acc = MetricAccumulator(len(v), self.ks)

    def _eval_step(self, batch: EvalBatch):
        users = batch.users
        q = self.net.scorer.dense_queries(self.net.user_vectors(users)).numpy()
        offsets = None
        if self.net.scorer.has_offsets():
            ids, values = self.net.scorer.offsets(users.history, users.history_weights)
            offsets = (ids.numpy(), values.numpy())
        self._acc.add(q, self._items, batch.targets, batch.exclude, self.num_threads, offsets)

    def _end_eval(self, stage: str):
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # each rank evaluated its share of the users: gather them, so every rank holds the metrics
            # of the whole set (fsum makes the means independent of the order)
            shares = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shares, self._acc)
            self._acc = MetricAccumulator(self._acc.n_items, self.ks)
            self._acc.merge(shares)
        res = self._acc.result()
        users = res.pop("users")
        metrics = {f"{stage}/{k}": v for k, v in res.items()}
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"non-finite {stage} metrics {bad} at epoch {self.current_epoch}")
        shown = self.monitor.split("/", 1)[-1]
        for k, v in metrics.items():  # under DDP the gathered values, equal on every rank: the sync is exact
            self.log(k, v, prog_bar=k == f"{stage}/{shown}", batch_size=int(users), sync_dist=True)
        self.last_metrics[stage] = metrics
        self.last_errors[stage] = {f"{stage}/{k}": v for k, v in self._acc.standard_errors().items()}
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
        checkpoint["rankers"] = {"net_hparams": dict(self.net.hparams), "bundle": self.bundle,
                                 "objective": vars(self.objective), "ks": list(self.ks),
                                 # a resumed run continues these (dropout draws from torch's generator)
                                 "rows_trained": self.rows_trained, "torch_rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("rankers", {})
        self.rows_trained = int(state.get("rows_trained", 0))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
