"""LightningDataModule: a data source -> prepared data -> pair batches and evaluation batches.

``RankingDataModule`` takes any source with ``load() -> RawData``; ``files`` and
``movielens`` build it for ``data=files`` and ``data=movielens`` with their flat config keys.
Every default lives in ``rankers/conf/data/``.
"""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from rankers.data.dataset import EvalSet, Ragged, RankingData, WarmStart, prepare, time_window
from rankers.data.errors import DataError
from rankers.data.files import FileSource
from rankers.data.movielens import MovieLensSource
from rankers.model import OOV, UserInputs, history_mask
from rankers.training.batches import CatalogueNegatives, EvalBatch, PairBatch, SampledNegatives
from rankers.training.sampling import Negatives, PairSampler


# PairStream shards itself over ranks and workers, so its length is right; Lightning cannot know.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


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


class EpochLoader(DataLoader):
    """The training DataLoader of one epoch, resumable mid-epoch (Lightning saves and restores
    its ``state_dict``): the state is (seed, epoch, batches trained), and a run resumed from a
    checkpoint taken inside an epoch restarts the stream at the next batch, exactly as the
    uninterrupted run would have drawn it (batch b depends on (seed, epoch, b, rank) alone).

    Args:
        stream: the epoch's PairStream.
        trained: the number of this epoch's batches trained so far (the trainer's progress;
            the loader itself is one batch ahead, Lightning prefetches).
    """

    def __init__(self, stream: "PairStream", trained: Callable[[], int]):
        super().__init__(stream, batch_size=None, collate_fn=_identity)
        self._trained = trained

    def state_dict(self) -> dict:
        s: PairStream = self.dataset
        return {"seed": s.seed, "epoch": s.epoch, "batches": int(self._trained())}

    def load_state_dict(self, state: dict) -> None:
        s: PairStream = self.dataset
        if state["seed"] != s.seed:
            raise ValueError(f"the checkpoint was trained with seed {state['seed']}, this run has seed {s.seed}: "
                             "resume with the run's own config")
        if state["epoch"] == s.epoch:  # a checkpoint from an epoch's end leaves the next epoch whole
            s.start = min(int(state["batches"]), s.n_batches)


class PairStream(IterableDataset):
    """One epoch of training as a stream of ``PairBatch``es (DataLoader batch_size=None).

    An epoch's rows (``PairSampler.epoch_rows``: one user each, with up to
    ``positives_per_row`` of its positives) go in a seeded random order (``(seed, epoch)``), cut
    into batches of about ``batch_size`` positives (batch_size // positives_per_row rows). Under
    DDP, batch b is shared by the ranks (rank r takes its rows r, r + world, ...), so the ranks
    step together through the same batches and their averaged gradients are those of one process
    on the whole batch: the run is the single-process run, with the work split. DataLoader
    workers take whole batches (worker w: b % workers == w). A batch's negatives and dropout are
    drawn when it is made, from ``(seed, epoch, b, rank)``: memory is one batch, not an epoch,
    and a stream does not depend on the number of workers.
    """

    def __init__(self, data: RankingData, sampler: PairSampler, batch_size: int, seed: int, epoch: int,
                 id_dropout: float, history_dropout: float, rank: int = 0, world: int = 1):
        self.data, self.sampler = data, sampler
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.id_dropout, self.history_dropout = id_dropout, history_dropout
        self.rows_per_batch = max(1, batch_size // sampler.per_row)
        if self.rows_per_batch < world:
            raise ValueError(f"data.batch_size {batch_size} makes {self.rows_per_batch} rows per batch "
                             f"(loss.negatives.positives_per_row {sampler.per_row}), fewer than the {world} DDP "
                             f"processes sharing them")
        self.n_batches = (sampler.n_rows + self.rows_per_batch - 1) // self.rows_per_batch
        self.start = 0  # batches of this epoch already trained (a run resumed mid-epoch)
        # id dropout replaces the id token (first in every bag) by the id field's OOV token
        self.user_oov = data.user_vocab.vocab[data.user_vocab.id_field][OOV]
        self.item_oov = data.item_vocab.vocab[data.item_vocab.id_field][OOV]

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        order, starts = self.sampler.epoch_rows(np.random.default_rng((self.seed, self.epoch)))
        info = get_worker_info()
        n_rows = len(starts) - 1
        for b in range(0 if info is None else info.id, self.n_batches, 1 if info is None else info.num_workers):
            if b < self.start:
                continue
            rows = np.arange(b * self.rows_per_batch, min((b + 1) * self.rows_per_batch, n_rows))[self.rank::self.world]
            lens = starts[rows + 1] - starts[rows]
            ends = np.cumsum(lens)
            at = np.repeat(starts[rows] - (ends - lens), lens) + np.arange(int(ends[-1]) if len(ends) else 0)
            yield self.batch(order[at], np.repeat(np.arange(len(rows)), lens),
                             np.random.default_rng((self.seed, self.epoch, b, self.rank)))

    def batch(self, positives: np.ndarray, pos_row: np.ndarray, rng: np.random.Generator) -> PairBatch:
        """The batch of the positives ``positives`` [P] in rows ``pos_row`` [P] (ascending from 0,
        one user per row)."""
        d, s = self.data, self.sampler
        first = np.flatnonzero(np.r_[True, pos_row[1:] != pos_row[:-1]])
        users, pos = s.user[positives[first]], s.pos[positives]
        ut = d.user_tokens[users].copy()
        hist = d.history_fit.padded(users).astype(np.int64)
        # every positive of a row leaves the row's history bag: the model cannot find it there
        hit_p, hit_h = np.nonzero(hist[pos_row] == (pos + 1)[:, None])
        drop = np.zeros(hist.shape, bool)
        drop[pos_row[hit_p], hit_h] = True
        if self.history_dropout:
            drop |= rng.random(hist.shape) < self.history_dropout
        if self.id_dropout:
            ut[rng.random(len(users)) < self.id_dropout, 0] = self.user_oov
        t = torch.from_numpy
        if s.catalogue:
            items, pos_ix = np.arange(d.n_items), pos
            r, i, g = s.seen(users)
            negatives = CatalogueNegatives(t(r), t(i), t(g.astype(np.float32)))
        else:
            neg, neg_grade, mask = s.negatives(positives, rng)
            none = np.zeros(0, np.int64)
            shared, graded, shared_weight = s.shared_negatives(users, rng) if s.shared else \
                (none, (none, none, np.zeros(0, np.float32)), None)
            items, inv = np.unique(np.concatenate([pos, neg.ravel(), shared]), return_inverse=True)
            inv = inv.reshape(-1)
            pos_ix, n_neg = inv[:len(pos)], len(pos) + neg.size
            negatives = SampledNegatives(t(inv[len(pos):n_neg].reshape(neg.shape).astype(np.int64)), t(neg_grade),
                                         t(mask), t(inv[n_neg:].astype(np.int64)), tuple(map(t, graded)),
                                         None if shared_weight is None else t(shared_weight))
        it = d.item_tokens[items].copy()
        if self.id_dropout:
            it[rng.random(len(items)) < self.id_dropout, 0] = self.item_oov
        return PairBatch(users=user_inputs(ut, d.user_weights[users], hist, drop),
                         item_tokens=t(it), item_weights=t(d.item_weights[items]), items=t(items.astype(np.int64)),
                         pos=t(pos_ix.astype(np.int64)), pos_row=t(pos_row.astype(np.int64)),
                         pos_grade=t(s.pos_grade[positives]), weight=t(s.weight[positives]),
                         user_positives=t(s.user_positives[positives]), negatives=negatives)


class EvalUsers(Dataset):
    """Batches of evaluation users (``EvalBatch``). Under DDP rank r takes the r-th of ``world``
    near-equal runs of users: each user is evaluated once, every rank has batches (Lightning
    requires it), and the module gathers the per-user values of all ranks."""

    def __init__(self, data: RankingData, split: EvalSet, history: Ragged, batch_size: int, rank: int = 0,
                 world: int = 1):
        self.data, self.split, self.history, self.batch_size = data, split, history, batch_size
        n = len(split.users)
        self.start, self.stop = n * rank // world, n * (rank + 1) // world

    def __len__(self):
        return (self.stop - self.start + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int) -> EvalBatch:
        lo = self.start + b * self.batch_size
        sl = slice(lo, min(lo + self.batch_size, self.stop))
        users = self.split.users[sl]
        return EvalBatch(user_inputs(self.data.user_tokens[users], self.data.user_weights[users],
                                     self.history.padded(users).astype(np.int64)),
                         self.split.targets.lists(sl), self.split.exclude.lists(sl))


def _identity(batch):
    return batch


class RankingDataModule(pl.LightningDataModule):
    """Builds RankingData from ``source`` and serves training pairs and evaluation users.

    Args:
        source: object with ``load() -> RawData`` (SyntheticSource, MovieLensSource, FileSource).
        negatives: the pair set (``loss.negatives``, handed over by rankers.training.train).
        positive_threshold: grade at or above which an event is a positive (a test target).
        train_threshold: grade at or above which a training event is the preferred side of pairs
            (None: positive_threshold). Lower, e.g. views against unobserved items, it trains on
            every graded event; the objective's weighting decides how much each pair counts.
        split / val_split: kwargs for rankers.data.splits.split (val carved from train; None: none).
        batch_size: positives per training batch; eval_batch_size: users per evaluation batch.
        max_history: most recent items in a user's history bag.
        history_min_grade: only events graded at least this enter the history bag (None = all).
        id_dropout / history_dropout: training-time regularisers for cold start (see PairStream).
        seed: base seed of negative sampling (epoch e uses (seed, e)).
        eval_max_users: evaluate a seeded sample of this many users (validation and test;
            None = all): full-catalogue metrics cost users x catalogue.
        since / until: read only the training log's events with since <= timestamp < until
            (a number in the log's unit, or an ISO date; None: unbounded): a retraining window.
    The attribute ``warm`` (a ``WarmStart``, set before ``setup`` by a warm-started run) grows
    the previous model's vocabularies and catalogue.
    """

    def __init__(self, source, negatives: Mapping, *, positive_threshold: float, train_threshold: Optional[float],
                 split: Optional[Mapping],
                 val_split: Optional[Mapping], batch_size: int, eval_batch_size: int, max_history: int,
                 history_min_grade: Optional[float], id_dropout: float, history_dropout: float, seed: int,
                 eval_max_users: Optional[int], since=None, until=None):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size}, "
                             f"{eval_batch_size}")
        self.source = source
        self.negatives = negatives if isinstance(negatives, Negatives) else Negatives(**negatives)
        self.positive_threshold = positive_threshold
        self.train_threshold = positive_threshold if train_threshold is None else train_threshold
        self.split_cfg = dict(split) if split else None
        self.val_cfg = dict(val_split) if val_split else None
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_history, self.history_min_grade = max_history, history_min_grade
        self.id_dropout, self.history_dropout = id_dropout, history_dropout
        self.seed, self.eval_max_users = seed, eval_max_users
        self.window = time_window(since, until)
        self.warm: Optional[WarmStart] = None
        self.data: Optional[RankingData] = None
        self.sampler: Optional[PairSampler] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.data is not None:
            return
        data = prepare(self.source.load(), self.positive_threshold, self.split_cfg, self.val_cfg,
                       self.max_history, self.history_min_grade, self.window, self.warm)
        data.test = data.test.sample(self.eval_max_users, self.seed)
        data.val = data.val.sample(self.eval_max_users, self.seed) if data.val is not None else None
        self.data = data
        self.sampler = PairSampler(self.data.train, self.data.n_items, self.train_threshold, self.negatives)
        if not (self.sampler.weight > 0).any():  # a loss of 0 would train nothing and exit 0
            raise DataError(f"no training positive (grade >= {self.train_threshold}) has a weight > 0: "
                            f"{len(self.sampler)} positives, column 'weight' all 0 or no positives at all; "
                            "nothing to learn")

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # Batches are built on the CPU: a CPU run has nothing to move, and Lightning's generic walk
        # over the dataclasses (and an evaluation batch's per-user arrays) cost ~3 ms a step, a
        # seventh of a sampled step on a 20,000-item catalogue.
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def catalogue(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item tokens and weights of the whole catalogue: [N, Ti] each."""
        return torch.from_numpy(self.data.item_tokens), torch.from_numpy(self.data.item_weights)

    def train_dataloader(self):
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        ds = PairStream(self.data, self.sampler, self.batch_size, self.seed, epoch, self.id_dropout,
                        self.history_dropout, *self._rank())
        return EpochLoader(ds, lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def _rank(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def val_dataloader(self):
        if self.data.val is None:
            return []  # never validate on test: no val_split, no validation
        return DataLoader(EvalUsers(self.data, self.data.val, self.data.history_fit, self.eval_batch_size,
                                    *self._rank()), batch_size=None, collate_fn=_identity)

    def test_dataloader(self):
        return DataLoader(EvalUsers(self.data, self.data.test, self.data.history_full, self.eval_batch_size,
                                    *self._rank()), batch_size=None, collate_fn=_identity)


def files(negatives: Mapping, train: str, test: Optional[str], items: Optional[str], users: Optional[str],
          item_features: Sequence, user_features: Sequence, grades: Optional[Mapping[str, float]],
          rating_scale: Optional[Sequence[float]], **kwargs) -> RankingDataModule:
    """``data=files``: a RankingDataModule over a FileSource (``split`` splits train when there is
    no test file); other kwargs are RankingDataModule's."""
    return RankingDataModule(FileSource(train, test, items, users, item_features, user_features, grades,
                                        rating_scale), negatives, **kwargs)


def movielens(negatives: Mapping, path: str, split: Optional[str], holdout: Optional[Mapping],
              use_user_features: bool, use_item_features: bool, **kwargs) -> RankingDataModule:
    """``data=movielens``: a RankingDataModule over a MovieLens folder. ``split`` names an
    official 100k split (ua, ub, u1..u5); with ``split=null`` (or other releases) the log is
    split by ``holdout`` (kwargs of rankers.data.splits.split). Other kwargs are RankingDataModule's."""
    source = MovieLensSource(path, split, use_user_features, use_item_features)
    return RankingDataModule(source, negatives, split=holdout, **kwargs)
