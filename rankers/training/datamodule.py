"""LightningDataModule: a data source -> prepared data -> pair batches and evaluation batches.

``RankingDataModule`` takes any source with ``load() -> RawData``; ``files`` and
``movielens`` build it for ``data=files`` and ``data=movielens`` with their flat config keys.
Every default lives in ``configs/data/``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from rankers.data.dataset import EvalSet, RankingData, prepare
from rankers.data.files import FileSource
from rankers.data.movielens import MovieLensSource
from rankers.model import OOV, UserInputs, history_mask
from rankers.training.batches import CatalogueNegatives, EvalBatch, PairBatch, SampledNegatives
from rankers.training.sampling import Negatives, PairBatchArrays, PairSampler


def user_inputs(tokens: np.ndarray, weights: np.ndarray, history: np.ndarray,
                drop: Optional[np.ndarray] = None) -> UserInputs:
    """Tensors of users' bags [B, Tu] and histories [B, H]; ``drop`` [B, H] bool leaves history
    entries out of the bag."""
    t = torch.from_numpy
    h = t(np.ascontiguousarray(history))
    hw = history_mask(h)
    if drop is not None:
        hw = hw * t(~drop)
    return UserInputs(t(np.ascontiguousarray(tokens)), t(np.ascontiguousarray(weights)), h, hw)


class PairEpoch(Dataset):
    """One epoch of training pairs, served as whole ``PairBatch``es (DataLoader batch_size=None)."""

    def __init__(self, data: RankingData, pairs: PairBatchArrays, batch_size: int, rng: np.random.Generator,
                 id_dropout: float, history_dropout: float, sampler: PairSampler):
        self.data, self.pairs, self.batch_size = data, pairs, batch_size
        self.sampler = sampler
        self.order = rng.permutation(len(pairs.user))
        self.user_positives = np.bincount(pairs.user).astype(np.float32)  # one pair row per positive
        self.seed = int(rng.integers(2**31))
        self.id_dropout, self.history_dropout = id_dropout, history_dropout
        # id dropout replaces the id token (first in every bag) by the id field's OOV token
        self.user_oov = data.user_vocab.vocab[data.user_vocab.id_field][OOV]
        self.item_oov = data.item_vocab.vocab[data.item_vocab.id_field][OOV]

    def __len__(self):
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int) -> PairBatch:
        d, p = self.data, self.pairs
        rng = np.random.default_rng((self.seed, b))
        rows = self.order[b * self.batch_size:(b + 1) * self.batch_size]
        users, pos, neg = p.user[rows], p.pos[rows], p.neg[rows]
        ut = d.user_tokens[users].copy()
        hist = d.history_fit[users]
        drop = hist == (pos + 1)[:, None]
        if self.history_dropout:
            drop |= rng.random(hist.shape) < self.history_dropout
        if self.id_dropout:
            ut[rng.random(len(users)) < self.id_dropout, 0] = self.user_oov
        t = torch.from_numpy
        if self.sampler.catalogue:
            items, pos_ix = np.arange(d.n_items), pos
            r, i, g = self.sampler.seen(users)
            negatives = CatalogueNegatives(t(r), t(i), t(g.astype(np.float32)))
        else:
            items, inv = np.unique(np.concatenate([pos, neg.ravel()]), return_inverse=True)
            inv = inv.reshape(-1)
            pos_ix = inv[:len(pos)]
            negatives = SampledNegatives(t(inv[len(pos):].reshape(neg.shape).astype(np.int64)),
                                         t(p.neg_grade[rows]), t(p.mask[rows]))
        it = d.item_tokens[items].copy()
        if self.id_dropout:
            it[rng.random(len(items)) < self.id_dropout, 0] = self.item_oov
        return PairBatch(users=user_inputs(ut, d.user_weights[users], hist, drop),
                         item_tokens=t(it), item_weights=t(d.item_weights[items]), items=t(items.astype(np.int64)),
                         pos=t(pos_ix.astype(np.int64)), pos_grade=t(p.pos_grade[rows]), weight=t(p.weight[rows]),
                         user_positives=t(self.user_positives[users]), negatives=negatives)


class EvalUsers(Dataset):
    """Batches of evaluation users (``EvalBatch``)."""

    def __init__(self, data: RankingData, split: EvalSet, history: np.ndarray, batch_size: int):
        self.data, self.split, self.history, self.batch_size = data, split, history, batch_size

    def __len__(self):
        return (len(self.split.users) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int) -> EvalBatch:
        sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
        users = self.split.users[sl]
        return EvalBatch(user_inputs(self.data.user_tokens[users], self.data.user_weights[users], self.history[users]),
                         self.split.targets[sl], self.split.exclude[sl])


def _identity(batch):
    return batch


class RankingDataModule(pl.LightningDataModule):
    """Builds RankingData from ``source`` and serves training pairs and evaluation users.

    Args:
        source: object with ``load() -> RawData`` (SyntheticSource, MovieLensSource, FileSource).
        negatives: the pair set (``loss.negatives``, handed over by rankers.training.train).
        positive_threshold: grade at or above which an event is a positive.
        split / val_split: kwargs for rankers.data.splits.split (val carved from train; None: none).
        batch_size: positives per training batch; eval_batch_size: users per evaluation batch.
        max_history: most recent items in a user's history bag.
        history_min_grade: only events graded at least this enter the history bag (None = all).
        id_dropout / history_dropout: training-time regularisers for cold start (see PairEpoch).
        seed: base seed of negative sampling (epoch e uses (seed, e)).
    """

    def __init__(self, source, negatives: Mapping, *, positive_threshold: float, split: Optional[Mapping],
                 val_split: Optional[Mapping], batch_size: int, eval_batch_size: int, max_history: int,
                 history_min_grade: Optional[float], id_dropout: float, history_dropout: float, seed: int):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, "
                             f"{eval_batch_size}")
        self.source = source
        self.negatives = negatives if isinstance(negatives, Negatives) else Negatives(**negatives)
        self.positive_threshold = positive_threshold
        self.split_cfg = dict(split) if split else None
        self.val_cfg = dict(val_split) if val_split else None
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
        self.sampler = PairSampler(self.data.train, self.data.n_items, self.positive_threshold, self.negatives)

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


def files(negatives: Mapping, train: str, test: str, items: Optional[str], users: Optional[str],
          item_features: Sequence, user_features: Sequence, grades: Optional[Mapping[str, float]],
          rating_scale: Optional[Sequence[float]], **kwargs) -> RankingDataModule:
    """``data=files``: a RankingDataModule over a FileSource; other kwargs are RankingDataModule's."""
    return RankingDataModule(FileSource(train, test, items, users, item_features, user_features, grades,
                                        rating_scale), negatives, split=None, **kwargs)


def movielens(negatives: Mapping, path: str, split: Optional[str], holdout: Optional[Mapping],
              use_user_features: bool, use_item_features: bool, **kwargs) -> RankingDataModule:
    """``data=movielens``: a RankingDataModule over a MovieLens folder. ``split`` names an
    official 100k split (ua, ub, u1..u5); with ``split=null`` (or other releases) the log is
    split by ``holdout`` (kwargs of rankers.data.splits.split). Other kwargs are RankingDataModule's."""
    source = MovieLensSource(path, split, use_user_features, use_item_features)
    return RankingDataModule(source, negatives, split=holdout, **kwargs)
