"""``train(cfg) -> metrics``: build data, model and trainer from a Hydra config, fit, test,
score the popularity baseline, and write the run directory:

    <run>/config.yaml      the resolved config
    <run>/checkpoints/     Lightning checkpoints (best on eval.monitor and last; without
                           validation, the last epoch's)
    <run>/csv/metrics.csv  the CSV log
    <run>/metrics.json     test metrics, popularity/... baseline, fit_seconds, train_seconds
    <run>/export/          model.ts, model.pt2, lookups.json, metadata.json, checkpoint.pt (rankers.artifact)

Every default lives in ``rankers/conf/``: this module reads keys, it never supplies them.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from rankers.artifact.schema import SCANS, ExportBundle
from rankers.artifact.writer import export, write_json_atomic
from rankers.data.dataset import RankingData, time_window
from rankers.data.errors import DataError
from rankers.losses.rows import fusable
from rankers.training.callbacks import TrainClock
from rankers.training.evaluation import evaluate_popularity, metric_names
from rankers.training.lists import is_list_config, train_lists
from rankers.training.module import RankerModule
from rankers.training.warm import (OPTIMIZER_STATES, check_model, load_previous, row_maps, warm_optimizer_state,
                                   warm_state)

log = logging.getLogger(__name__)
SPARSE_OPTIMIZERS = ("rankers.training.optim.Adagrad", "torch.optim.Adagrad", "torch.optim.SGD")  # take sparse and dense gradients alike


def bundle_from_data(data: RankingData) -> ExportBundle:
    """What an export needs from the prepared data: the known (training) users' bags and full
    histories, the catalogue's bags, the vocabularies."""
    n = data.n_train_users
    return ExportBundle(item_ids=[str(s) for s in data.item_ids], user_ids=[str(s) for s in data.user_ids[:n]],
                        user_tokens=data.user_tokens[:n], user_weights=data.user_weights[:n],
                        history=data.history_full.take(np.arange(n)), item_tokens=data.item_tokens, item_weights=data.item_weights,
                        user_vocab=data.user_vocab, item_vocab=data.item_vocab)


def check_config(cfg: DictConfig) -> None:
    """Config errors that would otherwise surface after training: a ValueError naming the key."""
    if cfg.export_scan not in SCANS:
        raise ValueError(f"export_scan must be one of {', '.join(SCANS)}, got {cfg.export_scan!r}")
    ks = list(cfg.eval.ks)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"eval.ks must be a non-empty list of integers >= 1, got {ks}")
    names = metric_names(ks)
    stage, _, name = str(cfg.eval.monitor).partition("/")
    if stage != "val" or name not in names:
        raise ValueError(f"eval.monitor must be val/<metric> with a metric that eval.ks={ks} gives "
                         f"({', '.join(names)}); got {cfg.eval.monitor!r}")
    for key, v in (("data.batch_size", cfg.data.get("batch_size", 1)), ("eval.batch_size", cfg.eval.batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {v!r}")
    time_window(cfg.data.get("since"), cfg.data.get("until"))
    if cfg.get("init_optimizer", "fresh") not in OPTIMIZER_STATES:
        raise ValueError(f"init_optimizer must be one of {', '.join(OPTIMIZER_STATES)}, got {cfg.init_optimizer!r}")
    if cfg.get("init_from") and cfg.get("resume"):
        raise ValueError("init_from= starts a new run from a previous model, resume= continues a killed run: "
                         "give one of them")
    if cfg.trainer.get("max_epochs") == 0:
        raise ValueError("trainer.max_epochs=0 trains nothing (the export would be the random initial model); "
                         "set it >= 1")
    neg = cfg.loss.get("negatives") or {}
    if neg.get("shared_popularity", 0) and neg.get("shared", 0) and not neg.get("catalogue", False):
        if not fusable(str(cfg.loss.get("pair_loss")), str(cfg.loss.get("weighting"))) or any(
                neg.get(k, 0) for k in ("uniform", "popular", "own")):
            raise ValueError(f"loss.negatives.shared_popularity={neg.shared_popularity} weighs the shared columns in "
                             f"the C++ pass: it takes loss.pair_loss hinge or logistic, loss.weighting uniform or "
                             f"warp and no per-positive negatives (loss.negatives.uniform/popular/own = 0); got "
                             f"{cfg.loss.get('pair_loss')}/{cfg.loss.get('weighting')}, uniform={neg.get('uniform')}, "
                             f"popular={neg.get('popular')}, own={neg.get('own')}")
    if cfg.model.get("sparse"):
        if cfg.loss.l1 or cfg.loss.l2:
            raise ValueError("model.sparse=true trains the embeddings with sparse gradients; loss.l1 and loss.l2 "
                             f"would touch every row at every step: set them to 0 (got {cfg.loss.l1}, {cfg.loss.l2})")
        if str(cfg.optim.get("_target_", "")) not in SPARSE_OPTIMIZERS:
            raise ValueError(f"model.sparse=true needs an optimizer that takes sparse gradients "
                             f"({', '.join(SPARSE_OPTIMIZERS)}: optim=adagrad); got {cfg.optim.get('_target_')}")


def build(cfg: DictConfig):
    """Instantiate (datamodule, module) from ``cfg``; the datamodule is set up (data loaded).
    With ``init_from``, the vocabularies grow from the previous model's and the weights (and,
    with ``init_optimizer=carry``, the optimiser's state) start from it (rankers.training.warm)."""
    prev = load_previous(cfg.init_from) if cfg.get("init_from") else None
    if prev is not None:
        check_model(OmegaConf.to_container(cfg.model, resolve=True), prev)
    objective = hydra.utils.instantiate(cfg.loss)
    # The objective names its pair set; the data pipeline draws it.
    dm = hydra.utils.instantiate(cfg.data, negatives=objective.negatives)
    if prev is not None:
        dm.warm = prev.warm_start()
    dm.setup("fit")
    net = hydra.utils.instantiate(cfg.model)(**dm.data.sizes())
    maps = row_maps(dm.data, prev) if prev is not None else None  # for the weights and the optimiser state
    if prev is not None:
        net.load_state_dict(warm_state(net, prev, dm.data, maps))
        log.info("warm start from %s: %d -> %d items, %d -> %d user tokens, %d -> %d item tokens", prev.path,
                 len(prev.bundle.item_ids), dm.data.n_items, prev.bundle.user_vocab.n_tokens,
                 dm.data.user_vocab.n_tokens, prev.bundle.item_vocab.n_tokens, dm.data.item_vocab.n_tokens)
    optimizer = hydra.utils.instantiate(cfg.optim)
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.scheduler else None
    module = RankerModule(net, objective, optimizer, scheduler, ks=list(cfg.eval.ks), monitor=cfg.eval.monitor,
                          num_threads=cfg.num_threads, bundle=bundle_from_data(dm.data).state())
    if prev is not None and cfg.init_optimizer == "carry":
        module.initial_optimizer_state = warm_optimizer_state(net, prev, dm.data, maps)
    return dm, module


def _callbacks(cfg: DictConfig, has_val: bool) -> List[pl.Callback]:
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.callbacks or {}).values() if c and "_target_" in c]
    if has_val:
        return callbacks
    # Nothing to monitor: no early stopping and no best checkpoint; last.ckpt (the last epoch's)
    # stays, so that a run without validation (experiment=ml100k) can be resumed and re-exported.
    keeps_last = any(isinstance(c, ModelCheckpoint) and c.save_last and not c.monitor for c in callbacks)
    out = []
    for c in callbacks:
        if isinstance(c, pl.callbacks.EarlyStopping):
            continue
        if isinstance(c, ModelCheckpoint) and c.monitor:
            if keeps_last:
                continue
            c = ModelCheckpoint(dirpath=c.dirpath, save_top_k=0, save_last=True)
        out.append(c)
    return out


def _keep_killed_csv_logs(loggers) -> None:
    """Lightning's CSV logger deletes an existing metrics.csv; the killed part of a resumed run
    keeps its log as metrics.until-resume-<time>.csv (its last rows, past the checkpoint, are
    trained again in the new metrics.csv)."""
    for lg in loggers:
        if isinstance(lg, pl.loggers.CSVLogger):
            f = Path(lg.log_dir) / "metrics.csv"
            if f.is_file():
                os.replace(f, f.with_name(f"metrics.until-resume-{time.strftime('%Y%m%dT%H%M%S')}.csv"))


RESUME_KEYS = ("data", "model", "loss", "seed")  # what a resumed run must share with the run it continues


def resume_checkpoint(cfg: DictConfig) -> tuple[Optional[Path], Optional[Path]]:
    """(checkpoint, run directory) that ``resume=`` names (a run directory: its
    checkpoints/last.ckpt; or a checkpoint file), checked against the config of the run that
    wrote it where that run's config.yaml is beside its checkpoints/ (then that is the run
    directory, else None); (None, None) without ``resume``."""
    if not cfg.resume:
        return None, None
    p = Path(str(cfg.resume))
    if p.is_dir():
        found = [c for c in (p / "checkpoints" / "last.ckpt", p / "last.ckpt") if c.is_file()]
        if not found:
            raise FileNotFoundError(f"resume={cfg.resume}: no checkpoints/last.ckpt in that directory (a run "
                                    "with callbacks=none writes no checkpoint)")
        ckpt = found[0]
    elif p.is_file():
        ckpt = p
    else:
        raise FileNotFoundError(f"resume={cfg.resume}: no such run directory or checkpoint file")
    run_cfg = ckpt.resolve().parent.parent / "config.yaml"
    if not (ckpt.resolve().parent.name == "checkpoints" and run_cfg.is_file()):
        return ckpt, None
    was, now = _resume_keys(OmegaConf.load(run_cfg)), _resume_keys(cfg)
    diff = [f"{k}={was.get(k)!r} (now {now.get(k)!r})" for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
    if diff:
        raise ValueError(f"resume={cfg.resume}: that run was trained with {', '.join(diff[:5])}"
                         f"{' and more' if len(diff) > 5 else ''}; resume with its own config ({run_cfg})")
    return ckpt, run_cfg.parent


def _resume_keys(c: DictConfig) -> Dict[str, object]:
    """RESUME_KEYS of a config as flat ``a.b.c`` keys, each resolved in place (its
    interpolations point elsewhere in the config)."""
    return dict(_flatten({k: OmegaConf.to_container(c[k], resolve=True) if OmegaConf.is_config(c[k]) else c[k]
                          for k in RESUME_KEYS if k in c}))


def _flatten(v, prefix: str = ""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _flatten(x, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, v


def train(cfg: DictConfig) -> Dict[str, float]:
    """Run one configured experiment; returns the metrics written to metrics.json."""
    check_config(cfg)  # now, not after the training it would waste
    if is_list_config(cfg):  # the paper's model on impression lists (rankers.training.lists)
        if cfg.resume or cfg.get("init_from"):
            raise ValueError("resume= and init_from= are for the two-tower model; a list model trains in minutes")
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
        loggers = [hydra.utils.instantiate(c) for c in (cfg.logger or {}).values() if c and "_target_" in c]
        return train_lists(cfg, _callbacks(cfg, bool(cfg.data.val_lists)), loggers)
    ckpt_path, run_dir = resume_checkpoint(cfg)
    if run_dir is not None:
        # continue in the run's own directory: its checkpoint callbacks keep their best score
        # (Lightning reloads it only for the same dirpath) and metrics.json lands beside them
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    devices = int(cfg.trainer.get("devices", 1)) if str(cfg.trainer.get("strategy", "")).startswith("ddp") else 1
    if cfg.num_threads or devices > 1:  # DDP processes share the cores
        torch.set_num_threads(int(cfg.num_threads or max(1, (os.cpu_count() or 1) // devices)))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if rank_zero_only.rank == 0:  # under DDP, rank 0 alone writes the run directory
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    dm, module = build(cfg)
    data = dm.data
    if len(data.test.users) == 0:  # now, not as a KeyError after the whole training
        raise DataError("the test split has no user with a held-out positive that was not already a training "
                        "positive of that user: nothing to evaluate (check data.test / data.split)")
    log.info("data %s: %d users, %d items, %d training rows, %d val users, %d test users", data.name,
             data.n_users, data.n_items, len(data.train), len(data.val.users) if data.val else 0,
             len(data.test.users))
    loggers = [hydra.utils.instantiate(c) for c in (cfg.logger or {}).values() if c and "_target_" in c]
    if run_dir is not None and rank_zero_only.rank == 0:
        _keep_killed_csv_logs(loggers)
    clock = TrainClock()
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[clock, *_callbacks(cfg, data.val is not None)],
                                                  logger=loggers or False)

    t0 = time.perf_counter()
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    # weights_only=False: our checkpoints carry the export bundle's numpy arrays; resume= names
    # the user's own run (a checkpoint is a pickle: never resume from an untrusted file)
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path is not None else None,
                weights_only=False)
    fit_seconds = time.perf_counter() - t0

    ckpt = trainer.checkpoint_callback
    # Only a checkpoint chosen on the validation metric replaces the final weights.
    best = ckpt.best_model_path if ckpt is not None and ckpt.monitor and ckpt.best_model_score is not None else ""
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        log.info("best checkpoint %s (%s %.4f)", best, cfg.eval.monitor, float(ckpt.best_model_score))
    module.eval()
    trainer.test(module, datamodule=dm, verbose=False)
    metrics: Dict[str, float] = dict(module.last_metrics["test"])
    metrics.update({f"{k}_se": v for k, v in module.last_errors["test"].items()})
    if "val" in module.last_metrics and best:
        metrics[f"{cfg.eval.monitor}_best"] = float(ckpt.best_model_score)
    metrics["fit_seconds"] = fit_seconds
    metrics["train_seconds"] = clock.seconds  # the training epochs alone (no validation, no checkpoints)
    metrics["fit_positives"] = module.rows_trained * trainer.world_size  # positives trained on, all epochs
    metrics["epochs"] = trainer.current_epoch
    metrics["test_users"] = len(data.test.users)
    # the events this run read: an offline gate refuses to evaluate the model on them
    metrics["data_first_timestamp"], metrics["data_last_timestamp"] = data.window
    if not trainer.is_global_zero:  # the ranks gathered the same metrics; rank 0 alone goes on
        return metrics
    if cfg.baseline:
        acc = evaluate_popularity(data.popularity, data.test.targets, data.test.exclude, ks=list(cfg.eval.ks),
                                  batch_size=int(cfg.eval.batch_size), num_threads=cfg.num_threads)
        pop = acc.result()
        pop.pop("users")
        metrics.update({f"popularity/{k}": v for k, v in pop.items()})
        metrics.update({f"popularity/{k}_se": v for k, v in acc.standard_errors().items()})
    write_json_atomic(out / "metrics.json", metrics)
    if cfg.export:
        export(module.net, ExportBundle.from_state(module.bundle), out / "export",
               config=OmegaConf.to_container(cfg, resolve=True), metrics=metrics, scan=cfg.export_scan)
    _report(metrics, out, list(cfg.eval.ks))
    floor, key = cfg.min_test_metric, monitored_test_key(cfg)
    if floor is not None and metrics[key] < float(floor):
        raise RuntimeError(f"{key} {metrics[key]:.4f} is below min_test_metric {floor}")
    return metrics


def monitored_test_key(cfg: DictConfig) -> str:
    """The test counterpart of ``eval.monitor`` (``val/ndcg@10`` -> ``test/ndcg@10``)."""
    return "test/" + str(cfg.eval.monitor).partition("/")[2]


def _report(metrics: Dict[str, float], out: Path, ks: List[int]) -> None:
    def cell(key):
        v, se = metrics.get(key), metrics.get(f"{key}_se")
        return "-" if v is None else f"{v:.4f}" + ("" if se is None else f" ± {se:.4f}")

    lines = [f"{'metric':14s} {'model':>17s} {'popularity':>17s}   ({int(metrics['test_users'])} test users; "
             "± one standard error)"]
    for n in metric_names(ks):
        if f"test/{n}" in metrics:
            lines.append(f"{n:14s} {cell(f'test/{n}'):>17s} {cell(f'popularity/{n}'):>17s}")
    lines.append(f"fit_seconds {metrics['fit_seconds']:.1f}   run dir: {out}")
    print("\n".join(lines), flush=True)
