"""LightningDataModule: a data source -> prepared data -> pair batches and evaluation batches."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from rankers.data.dataset import EvalSet, RankingData, prepare
from rankers.data.sampling import PairSampler

ID_OOV = 1  # every encoder's id field gets token 1 for out-of-vocabulary (see EntityEncoder.fit)


def history_weights(hist: np.ndarray, drop: np.ndarray | None = None) -> np.ndarray:
    """History mask [B, H] float32 (1 = use); ``drop`` [B, H] bool removes entries. The user
    tower normalises the bag."""
    keep = hist > 0
    if drop is not None:
        keep &= ~drop
    return keep.astype(np.float32)


class PairEpoch(Dataset):
    """One epoch of training pairs, served as whole batches (DataLoader batch_size=None).

    Batch keys (B rows, M negatives, K distinct items in the batch):
        user_tokens, user_weights [B, Tu]; history, history_weights [B, H] (the positive itself
        left out, so the model cannot score an item by finding it in the history);
        item_tokens, item_weights [K, Ti], items [K] (their item indices); pos_ix [B], neg_ix [B, M]
        index into K;
        pos_grade [B], neg_grade [B, M], mask [B, M], weight [B]; user_positives [B]: how many
        training positives the row's user has (for the objective's per-user weighting).
    With catalogue negatives (M = 0 sampled), the items are the whole catalogue (K = N,
    pos_ix = item index) and seen_rows, seen_items, seen_grades [S] list each user's graded
    training items, from which the model builds the [B, N] grades and mask.
    """

    def __init__(self, data: RankingData, pairs, batch_size: int, rng: np.random.Generator,
                 id_dropout: float = 0.0, history_dropout: float = 0.0, sampler: Optional[PairSampler] = None):
        self.data, self.pairs, self.batch_size = data, pairs, batch_size
        self.sampler = sampler if sampler is not None and sampler.catalogue else None
        self.order = rng.permutation(len(pairs.user))
        self.user_positives = np.bincount(pairs.user).astype(np.float32)  # one pair row per positive
        self.seed = int(rng.integers(2**31))
        self.id_dropout, self.history_dropout = id_dropout, history_dropout

    def __len__(self):
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int) -> Dict[str, torch.Tensor]:
        d, p = self.data, self.pairs
        rng = np.random.default_rng((self.seed, b))
        rows = self.order[b * self.batch_size:(b + 1) * self.batch_size]
        users, pos, neg = p.user[rows], p.pos[rows], p.neg[rows]
        ut, uw = d.user_tokens[users].copy(), d.user_weights[users]
        hist = d.history_fit[users]
        drop = hist == (pos + 1)[:, None]
        if self.history_dropout:
            drop |= rng.random(hist.shape) < self.history_dropout
        if self.id_dropout:
            ut[rng.random(len(users)) < self.id_dropout, 0] = ID_OOV
        if self.sampler is not None:
            items = np.arange(d.n_items)
            inv = np.concatenate([pos, neg.ravel()])
        else:
            items, inv = np.unique(np.concatenate([pos, neg.ravel()]), return_inverse=True)
        it = d.item_tokens[items].copy()
        if self.id_dropout:
            it[rng.random(len(items)) < self.id_dropout, 0] = ID_OOV
        t = torch.from_numpy
        extra = {}
        if self.sampler is not None:
            r, i, g = self.sampler.seen(users)
            extra = {"seen_rows": t(r), "seen_items": t(i), "seen_grades": t(g.astype(np.float32))}
        return {
            **extra,
            "user_tokens": t(ut), "user_weights": t(uw), "history": t(hist),
            "history_weights": t(history_weights(hist, drop)),
            "item_tokens": t(it), "item_weights": t(d.item_weights[items]), "items": t(items.astype(np.int64)),
            "pos_ix": t(inv[: len(pos)].astype(np.int64)), "neg_ix": t(inv[len(pos):].reshape(neg.shape).astype(np.int64)),
            "pos_grade": t(p.pos_grade[rows]), "neg_grade": t(p.neg_grade[rows]), "mask": t(p.mask[rows]),
            "weight": t(p.weight[rows]), "user_positives": t(self.user_positives[users]),
        }


class EvalUsers(Dataset):
    """Batches of evaluation users: user_tokens, user_weights, history, history_weights (tensors),
    plus ``targets`` and ``exclude`` (lists of int64 arrays, one per user)."""

    def __init__(self, data: RankingData, split: EvalSet, history: np.ndarray, batch_size: int):
        self.data, self.split, self.history, self.batch_size = data, split, history, batch_size

    def __len__(self):
        return (len(self.split.users) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int) -> Dict[str, Any]:
        sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
        users = self.split.users[sl]
        hist = self.history[users]
        t = torch.from_numpy
        return {"user_tokens": t(self.data.user_tokens[users]), "user_weights": t(self.data.user_weights[users]),
                "history": t(hist), "history_weights": t(history_weights(hist)),
                "targets": self.split.targets[sl], "exclude": self.split.exclude[sl]}


def _identity(batch):
    return batch


class RankingDataModule(pl.LightningDataModule):
    """Builds RankingData from ``source`` and serves training pairs and evaluation users.

    Args:
        source: object with ``load() -> RawData`` (SyntheticSource, MovieLensSource, FileSource).
        positive_threshold: grade at or above which an event is a positive.
        split / val_split: kwargs for rankers.data.splits.split (val carved from train).
        negatives: counts {uniform, popular, own} per positive, or {catalogue: true} for all items.
        batch_size: positives per training batch; eval_batch_size: users per evaluation batch.
        max_history: most recent items in a user's history bag.
        history_min_grade: only events graded at least this enter the history bag (None = all).
        id_dropout / history_dropout: training-time regularisers for cold start (see PairEpoch).
        seed: base seed of negative sampling (epoch e uses (seed, e)).
    """

    def __init__(self, source, positive_threshold: float = 2.0, split: Optional[dict] = None,
                 val_split: Optional[dict] = None, negatives: Optional[dict] = None, batch_size: int = 512,
                 eval_batch_size: int = 512, max_history: int = 100, history_min_grade: Optional[float] = None,
                 id_dropout: float = 0.0,
                 history_dropout: float = 0.0, seed: int = 0):
        super().__init__()
        self.source = source
        self.positive_threshold = positive_threshold
        self.split_cfg = dict(split) if split else {"kind": "leave_last_n", "n": 1}
        self.val_cfg = dict(val_split) if val_split else None
        self.neg_cfg = dict(negatives) if negatives else {"uniform": 4, "popular": 2, "own": 1}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_history, self.history_min_grade = max_history, history_min_grade
        self.id_dropout, self.history_dropout = id_dropout, history_dropout
        self.seed = seed
        self.data: Optional[RankingData] = None
        self.sampler: Optional[PairSampler] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.data is not None:
            return
        self.data = prepare(self.source.load(), self.positive_threshold, self.split_cfg, self.val_cfg,
                            self.max_history, self.history_min_grade)
        self.sampler = PairSampler(self.data.train, self.data.n_items, self.positive_threshold, **self.neg_cfg)

    def catalogue(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item tokens and weights of the whole catalogue: [N, Ti] each."""
        return torch.from_numpy(self.data.item_tokens), torch.from_numpy(self.data.item_weights)

    def train_dataloader(self):
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        rng = np.random.default_rng((self.seed, epoch))
        pairs = self.sampler.sample(rng)
        ds = PairEpoch(self.data, pairs, self.batch_size, rng, self.id_dropout, self.history_dropout, self.sampler)
        return DataLoader(ds, batch_size=None, shuffle=False, collate_fn=_identity)

    def val_dataloader(self):
        if self.data.val is None:
            return []  # never validate on test: no val_split, no validation
        return DataLoader(EvalUsers(self.data, self.data.val, self.data.history_fit, self.eval_batch_size),
                          batch_size=None, collate_fn=_identity)

    def test_dataloader(self):
        return DataLoader(EvalUsers(self.data, self.data.test, self.data.history_full, self.eval_batch_size),
                          batch_size=None, collate_fn=_identity)
