"""ElasticRank with Lightning and Hydra: ``rankers train experiment=elasticrank`` (LETOR files),
``experiment=elasticrank_shop`` (the synthetic shop's impression log) or ``experiment=two_stage``
(the same log with a two-tower export's score as a feature: a two-stage model.ts).

``ListDataModule`` reads a list source (``load() -> (train, test)``: ``LetorSource``,
``ListTableSource``, ``rankers.data.synthetic_lists.SyntheticListSource``), holds out a seeded share of the training
lists for validation and streams batches of whole lists in a new seeded order each epoch (an
epoch is a pass). ``ListRankerModule`` trains the sparse linear model with the Δ-weighted pair
objective and an elastic-net optimiser, and evaluates NDCG@k and Recall@k per list.
``train_lists(cfg)`` is ``rankers.training.train.train`` for these configs: it writes the run
directory's config.yaml, checkpoints, metrics.json (with the random-order floor and the non-zero
weights) and ``export/linear.json`` (the non-zero weights).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, IterableDataset

from rankers.artifact.two_stage import RETRIEVAL, export_two_stage, load_retriever, retrieval_scores
from rankers.artifact.writer import write_json_atomic
from rankers.data.errors import DataError
from rankers.data.lists import ListData, list_table, read_letor
from rankers.data.log import read_table
from rankers.losses.lambda_pairs import lambda_pair_loss
from rankers.metrics.lists import ndcg_at_k, random_baseline, recall_at_k
from rankers.model.linear import SparseLinear
from rankers.training.callbacks import TrainClock
from rankers.training.listwise import ListBatch, batch_of, padded_scores

log = logging.getLogger(__name__)


class LetorSource:
    """LETOR / SVMlight files: ``train`` and ``test``, each with an optional LightGBM ``.query``
    file (``<file>.query`` is used when it exists and no query path is given)."""

    def __init__(self, train: str, test: str, train_query: Optional[str] = None, test_query: Optional[str] = None):
        self.train, self.test, self.train_query, self.test_query = train, test, train_query, test_query

    @staticmethod
    def _query(path: str, query: Optional[str]) -> Optional[str]:
        return query if query else (path + ".query" if Path(path + ".query").is_file() else None)

    def load(self) -> tuple[ListData, ListData]:
        train = read_letor(self.train, self._query(self.train, self.train_query))
        test = read_letor(self.test, self._query(self.test, self.test_query), n_features=train.n_features)
        if test.n_features > train.n_features:
            train.n_features = test.n_features
        return train, test


class ListTableSource:
    """CSV or Parquet list tables (``rankers.data.lists.read_list_table``): the test table is
    encoded with the training table's encoding. ``retriever``: a two-tower export whose score of
    each row (``user_col``, ``item_col``) becomes the numeric column ``retrieval_score`` (a
    two-stage reranker); ``item_columns``: the columns that are the item's own facts, stored
    per item in the two-stage export (its ``recommend`` has no candidate features to read)."""

    def __init__(self, train: str, test: str, list_col: str, label_col: str, numeric: Sequence[str],
                 categorical: Sequence, hash_buckets: Optional[int], retriever: Optional[str] = None,
                 user_col: str = "user_id", item_col: str = "item_id", item_columns: Sequence[str] = ()):
        self.train, self.test, self.list_col, self.label_col = train, test, list_col, label_col
        self.numeric, self.categorical, self.hash_buckets = list(numeric), list(categorical), hash_buckets
        self.retriever, self.user_col, self.item_col = retriever, user_col, item_col
        self.item_columns = list(item_columns)
        self.encoding = None
        self.items = None

    def _table(self, path: str, module):
        df = read_table(path)
        if module is not None:
            missing = [c for c in (self.user_col, self.item_col) if c not in df.columns]
            if missing:
                raise DataError(f"missing column(s) {missing} (the retriever scores user and item ids)", source=path)
            try:
                df[RETRIEVAL] = retrieval_scores(module, df[self.user_col].astype(str), df[self.item_col].astype(str))
            except Exception as e:  # an unknown item id: name the table
                raise DataError(f"the retriever cannot score its rows: {str(e).strip().splitlines()[-1]}",
                                source=path, column=self.item_col) from None
        return df

    def load(self) -> tuple[ListData, ListData]:
        module = load_retriever(self.retriever) if self.retriever else None
        numeric = self.numeric + ([RETRIEVAL] if module is not None else [])
        df = self._table(self.train, module)
        train, enc = list_table(df, self.train, self.list_col, self.label_col, numeric, self.categorical,
                                hash_buckets=self.hash_buckets)
        if self.item_columns:
            missing = [c for c in [self.item_col, *self.item_columns] if c not in df.columns]
            if missing:
                raise DataError(f"missing item column(s) {missing}", source=self.train)
            self.items = df.drop_duplicates(self.item_col)[[self.item_col, *self.item_columns]].rename(
                columns={self.item_col: "item_id"})
        test, _ = list_table(self._table(self.test, module), self.test, self.list_col, self.label_col, numeric,
                             self.categorical, encoding=enc)
        self.encoding = enc
        return train, test


class LambdaPairs:
    """The objective of ``loss=lambda_pairs``: ``lambda_pair_loss`` with its settings."""

    def __init__(self, k: int, delta: str, pair_loss: str, margin: float):
        self.k, self.delta, self.pair_loss, self.margin = k, delta, pair_loss, margin

    def __call__(self, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return lambda_pair_loss(scores, labels, mask, k=self.k, delta=self.delta, pair_loss=self.pair_loss,
                                margin=self.margin)


class ListStream(IterableDataset):
    """One pass over the lists, ``batch_lists`` per batch, in the order of seed (seed, epoch)."""

    def __init__(self, data: ListData, batch_lists: int, seed: int, epoch: int):
        self.data, self.batch_lists, self.seed, self.epoch = data, batch_lists, seed, epoch

    def __len__(self) -> int:
        return (self.data.n_lists + self.batch_lists - 1) // self.batch_lists

    def __iter__(self):
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.data.n_lists)
        for s in range(0, len(order), self.batch_lists):
            yield batch_of(self.data.take_lists(order[s:s + self.batch_lists]))


def _identity(b):
    return b


class ListDataModule(pl.LightningDataModule):
    """Args: source (``load() -> (train, test)``); scale: "list" (min-max within each list, the
    paper's) or "none"; val_lists: the share of training lists held out for validation (0: none);
    batch_lists: lists per step (1: the paper's one update per list); relevant: the label from
    which a row counts for Recall@k; seed."""

    def __init__(self, source, scale: str, val_lists: float, batch_lists: int, relevant: float, seed: int):
        super().__init__()
        if scale not in ("list", "none"):
            raise ValueError(f"data.scale must be 'list' or 'none', got {scale!r}")
        if not 0.0 <= val_lists < 1.0 or batch_lists < 1:
            raise ValueError(f"data.val_lists must be in [0, 1) and data.batch_lists >= 1, got {val_lists}, "
                             f"{batch_lists}")
        self.source, self.scale, self.val_lists, self.batch_lists = source, scale, val_lists, batch_lists
        self.relevant, self.seed = float(relevant), seed
        self.train: Optional[ListData] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        train, test = self.source.load()
        if self.scale == "list":
            train, test = train.scaled_within_lists(), test.scaled_within_lists()
        self.val = None
        if self.val_lists:
            order = np.random.default_rng((self.seed, 99)).permutation(train.n_lists)
            n_val = max(1, int(round(self.val_lists * train.n_lists)))
            self.val = train.take_lists(np.sort(order[:n_val]))
            train = train.take_lists(np.sort(order[n_val:]))
        self.train, self.test = train, test
        self.n_features = train.n_features

    def train_dataloader(self):
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return DataLoader(ListStream(self.train, self.batch_lists, self.seed, epoch), batch_size=None,
                          collate_fn=_identity)

    def val_dataloader(self):
        return [] if self.val is None else DataLoader([batch_of(self.val)], batch_size=None, collate_fn=_identity)

    def test_dataloader(self):
        return DataLoader([batch_of(self.test)], batch_size=None, collate_fn=_identity)


def list_metrics(scores: np.ndarray, batch: ListBatch, ks: Sequence[int], relevant: float) -> Dict[str, float]:
    """NDCG@k and Recall@k (label >= relevant) of a batch's rows [R], averaged over lists."""
    labels = batch.labels.reshape(-1).numpy()[batch.at.numpy()]
    offsets = np.r_[0, np.cumsum(batch.mask.sum(1).numpy())]
    out = {}
    for k in ks:
        out[f"ndcg@{k}"] = float(np.mean(ndcg_at_k(scores, labels, offsets, k)))
        out[f"recall@{k}"] = float(np.nanmean(recall_at_k(scores, labels, offsets, k, threshold=relevant)))
    return out


class ListRankerModule(pl.LightningModule):
    def __init__(self, net: SparseLinear, objective: LambdaPairs, optimizer, ks: Sequence[int], relevant: float):
        super().__init__()
        self.net, self.objective, self.optimizer_factory = net, objective, optimizer
        self.ks, self.relevant = list(ks), relevant
        self.last_metrics: Dict[str, Dict[str, float]] = {}

    def _optimizer(self):
        return self.optimizers().optimizer

    def training_step(self, batch: ListBatch, batch_idx: int) -> torch.Tensor:
        if self.net.sparse_grad:  # lazy updates: the weights this batch reads, current first
            opt = self._optimizer()
            if hasattr(opt, "prepare"):
                opt.prepare(batch.index)
        loss = self.objective(padded_scores(self.net, batch), batch.labels, batch.mask)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=int(batch.mask.shape[0]))
        return loss

    def configure_optimizers(self):
        return self.optimizer_factory(params=self.net.parameters())

    def on_train_epoch_end(self) -> None:
        opt = self._optimizer()
        if hasattr(opt, "finish"):  # PSGD and TGD sparsify once more: a pass ends sparse
            opt.finish()
        self._sync()

    def _sync(self) -> None:
        """Every weight current (after lazy updates): before evaluating or saving them."""
        if self.trainer is not None and self.trainer.optimizers:
            opt = self._optimizer()
            if hasattr(opt, "sync"):
                opt.sync()

    def on_validation_start(self) -> None:
        self._sync()

    def on_test_start(self) -> None:
        self._sync()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._sync()
        checkpoint["state_dict"]["net.weight"] = self.net.weight.detach().clone()

    def _evaluate(self, batch: ListBatch, stage: str) -> None:
        with torch.no_grad():
            scores = self.net(batch.index, batch.value, batch.row, batch.n_rows).numpy()
        m = list_metrics(scores, batch, self.ks, self.relevant)
        m["nonzeros"] = float(self.net.nonzeros())
        self.last_metrics[stage] = m
        self.log_dict({f"{stage}/{k}": v for k, v in m.items()}, batch_size=int(batch.mask.shape[0]))

    def validation_step(self, batch: ListBatch, batch_idx: int):
        self._evaluate(batch, "val")

    def test_step(self, batch: ListBatch, batch_idx: int):
        self._evaluate(batch, "test")


def train_lists(cfg: DictConfig, callbacks: List[pl.Callback], loggers) -> Dict[str, float]:
    """Fit, test and write the run directory (``rankers.training.train.train`` hands list configs
    here with its callbacks and loggers)."""
    out = Path(cfg.paths.output_dir)
    candidates = (cfg.get("two_stage") or {}).get("candidates", 100)
    if not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"two_stage.candidates must be a whole number >= 1, got {candidates!r}")
    dm: ListDataModule = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    log.info("lists: %d training, %d validation, %d test lists; %d features", dm.train.n_lists,
             dm.val.n_lists if dm.val is not None else 0, dm.test.n_lists, dm.n_features)
    net = hydra.utils.instantiate(cfg.model)(n_features=dm.n_features)
    ks = list(cfg.eval.ks)
    module = ListRankerModule(net, hydra.utils.instantiate(cfg.loss), hydra.utils.instantiate(cfg.optim), ks,
                              dm.relevant)
    clock = TrainClock()
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[clock, *callbacks], logger=loggers or False)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_seconds = time.perf_counter() - t0
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.monitor and ckpt.best_model_path:
        module.load_state_dict(torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"])
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = {f"test/{k}": v for k, v in module.last_metrics["test"].items()}
    if "val" in module.last_metrics:  # what tuning maximises: the best validation value (never test)
        best = ckpt.best_model_score if ckpt is not None and ckpt.monitor else None
        name = str(cfg.eval.monitor)
        metrics[f"{name}_best"] = float(best) if best is not None else \
            module.last_metrics["val"][name.partition("/")[2]]
    t = dm.test
    for k in ks:
        metrics[f"random/ndcg@{k}"] = random_baseline(t.labels, t.list_offsets, ndcg_at_k, k=k)
        metrics[f"random/recall@{k}"] = random_baseline(t.labels, t.list_offsets, recall_at_k, k=k,
                                                        threshold=dm.relevant)
    metrics.update(fit_seconds=fit_seconds, train_seconds=clock.seconds, epochs=trainer.current_epoch,
                   test_lists=t.n_lists, n_features=dm.n_features)
    retriever = getattr(dm.source, "retriever", None)
    if retriever:  # the test lists ranked by the retrieval stage alone: what the reranker must beat
        j = dm.source.encoding.numeric.index(RETRIEVAL)
        batch = batch_of(t)
        rows = t.feature_rows()
        scores = np.zeros(t.n_rows, np.float32)
        sel = t.feat_index == j  # scaled within lists: the same order as the raw scores
        scores[rows[sel]] = t.feat_value[sel]
        metrics.update({f"retriever/{k}": v for k, v in list_metrics(scores, batch, ks, dm.relevant).items()})
    write_json_atomic(out / "metrics.json", metrics)
    if cfg.export and retriever:
        export_two_stage(out / "export", retriever, dm.source.encoding, net.weight, dm.scale == "list",
                         dm.source.items, list(getattr(dm.source, "item_columns", [])), candidates, RETRIEVAL,
                         OmegaConf.to_container(cfg, resolve=True), metrics)
    elif cfg.export:
        w = net.weight.detach().numpy()
        nz = np.flatnonzero(w)
        enc = getattr(dm.source, "encoding", None)  # list tables and the synthetic log: names and the encoding
        write_json_atomic(out / "export" / "linear.json", {
            "format": "rankers.linear/1", "n_features": int(dm.n_features), "index": nz.tolist(),
            "weight": w[nz].astype(float).tolist(), "scale": dm.scale,
            **({"names": [enc.names()[i] for i in nz], "encoding": enc.state()} if enc is not None else {}),
            "config": OmegaConf.to_container(cfg, resolve=True)})
    head = f"{'metric':10s} {'model':>8s} {'random':>8s}" + (f" {'retriever':>9s}" if retriever else "")
    lines = [head + f"   ({t.n_lists} test lists; {int(metrics['test/nonzeros'])} of {dm.n_features} weights non-zero)"]
    for k in ks:
        for m in ("ndcg", "recall"):
            line = f"{m + '@' + str(k):10s} {metrics[f'test/{m}@{k}']:8.4f} {metrics[f'random/{m}@{k}']:8.4f}"
            if retriever:
                line += f" {metrics[f'retriever/{m}@{k}']:9.4f}"
            lines.append(line)
    lines.append(f"fit_seconds {fit_seconds:.1f}   run dir: {out}")
    print("\n".join(lines), flush=True)
    return metrics


def is_list_config(cfg: DictConfig) -> bool:
    """Whether ``cfg`` trains on lists (its data module is ListDataModule)."""
    return str(cfg.data.get("_target_", "")).endswith("ListDataModule")


