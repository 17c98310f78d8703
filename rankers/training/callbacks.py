"""Lightning callbacks of our own (the rest are Lightning's: checkpoint, early stopping, progress)."""
from __future__ import annotations

import math
import time
from typing import Optional

import pytorch_lightning as pl
import torch


class TrainClock(pl.Callback):
    """Wall seconds of the training epochs alone (``seconds``): each from its start to its
    validation or, without one, to its end; so validation and the epoch-end checkpoint, whose
    costs grow with the catalogue and the tables, are left out. ``metrics.json`` reports it as
    ``train_seconds`` beside ``fit_seconds`` (the whole ``trainer.fit``)."""

    def __init__(self):
        self.seconds = 0.0
        self._t0: Optional[float] = None

    def _stop(self) -> None:
        if self._t0 is not None:
            self.seconds += time.perf_counter() - self._t0
            self._t0 = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def state_dict(self) -> dict:  # a resumed run goes on counting
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = float(state_dict["seconds"])

    def on_validation_epoch_start(self, trainer, pl_module):
        self._stop()

    def on_train_epoch_end(self, trainer, pl_module):
        self._stop()


class FiniteGuard(pl.Callback):
    """Stops the run with an error naming epoch, step and learning rate as soon as the loss
    or any parameter stops being finite (a diverging run otherwise wastes hours silently)."""

    def __init__(self, check_params_every_n_steps: int):
        if check_params_every_n_steps < 1:
            raise ValueError(f"check_params_every_n_steps must be >= 1, got {check_params_every_n_steps}")
        self.every = int(check_params_every_n_steps)

    @staticmethod
    def _where(trainer: pl.Trainer) -> str:
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        return (f"epoch {trainer.current_epoch}, step {trainer.global_step}, "
                f"learning rate {lrs[0] if len(lrs) == 1 else lrs}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise FloatingPointError(f"non-finite loss {float(loss)} at {self._where(trainer)}; "
                                     "lower optim.lr or raise loss.l2")
        if trainer.global_step % self.every == 0:
            self._check_parameters(trainer, pl_module)

    def _check_parameters(self, trainer, pl_module) -> None:
        for name, p in pl_module.named_parameters():
            if not torch.isfinite(p).all():
                raise FloatingPointError(f"non-finite parameter {name} at {self._where(trainer)}; "
                                         "lower optim.lr or raise loss.l2")

    def on_train_epoch_end(self, trainer, pl_module):
        m = trainer.callback_metrics.get("train/loss_epoch")
        if m is not None and not math.isfinite(float(m)):
            raise FloatingPointError(f"non-finite epoch loss at {self._where(trainer)}")
        self._check_parameters(trainer, pl_module)
