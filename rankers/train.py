"""``train(cfg) -> metrics``: build data, model and trainer from a Hydra config, fit, test,
score the popularity baseline, and write the run directory:

    <run>/config.yaml      the resolved config
    <run>/checkpoints/     Lightning checkpoints (best on val/ndcg@10, and last)
    <run>/csv/metrics.csv  the CSV log
    <run>/metrics.json     test metrics, popularity/... baseline, fit_seconds
    <run>/export/          model.ts + metadata.json (rankers.export)
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from rankers.evaluation import evaluate_popularity
from rankers.export import SCANS, bundle_from_data, export
from rankers.models.module import RankerModule

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file + rename, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _instantiate_dict(cfg) -> list:
    return [hydra.utils.instantiate(c) for _, c in (cfg or {}).items() if c is not None and "_target_" in c]


def build(cfg: DictConfig):
    """Instantiate (datamodule, module) from ``cfg``; the datamodule is set up (data loaded)."""
    objective = hydra.utils.instantiate(cfg.loss)
    # The objective names its pair set; the data pipeline draws it.
    dm = hydra.utils.instantiate(cfg.data, negatives=objective.negatives)
    dm.setup("fit")
    net = hydra.utils.instantiate(cfg.model)(**dm.data.sizes())
    optimizer = hydra.utils.instantiate(cfg.optim)
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = RankerModule(net, objective, optimizer, scheduler, ks=list(cfg.eval.ks),
                          num_threads=cfg.get("num_threads"), encoders=bundle_from_data(dm.data))
    return dm, module


def train(cfg: DictConfig) -> Dict[str, float]:
    """Run one configured experiment; returns the metrics written to metrics.json."""
    out = Path(cfg.paths.output_dir)
    scan = cfg.get("export_scan", "auto")
    if scan not in SCANS:  # checked now, not after the training it would waste
        raise ValueError(f"export_scan must be one of {', '.join(SCANS)}, got {scan!r}")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    dm, module = build(cfg)
    data = dm.data
    log.info("data %s: %d users, %d items, %d training rows, %d val users, %d test users", data.name,
             data.n_users, data.n_items, len(data.train), len(data.val.users) if data.val else 0,
             len(data.test.users))
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    loggers = _instantiate_dict(cfg.get("logger"))
    if data.val is None:  # nothing to monitor: drop callbacks that need val metrics
        callbacks = [c for c in callbacks if not isinstance(c, (pl.callbacks.ModelCheckpoint,
                                                                pl.callbacks.EarlyStopping))]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_seconds = time.perf_counter() - t0

    ckpt = trainer.checkpoint_callback
    # Only a checkpoint chosen on the validation metric replaces the final weights.
    best = ckpt.best_model_path if ckpt is not None and ckpt.monitor and ckpt.best_model_score is not None else ""
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        log.info("best checkpoint %s (val/ndcg@10 %.4f)", best, float(ckpt.best_model_score))
    module.eval()
    trainer.test(module, datamodule=dm, verbose=False)
    metrics: Dict[str, float] = dict(module.last_metrics["test"])
    if "val" in module.last_metrics and best:
        metrics["val/ndcg@10_best"] = float(ckpt.best_model_score)
    if cfg.get("baseline", True):
        pop = evaluate_popularity(data.popularity, data.test.targets, data.test.exclude, ks=list(cfg.eval.ks),
                                  batch_size=int(cfg.eval.batch_size), num_threads=cfg.get("num_threads"))
        pop.pop("users")
        metrics.update({f"popularity/{k}": v for k, v in pop.items()})
    metrics["fit_seconds"] = fit_seconds
    metrics["epochs"] = trainer.current_epoch
    metrics["test_users"] = len(data.test.users)
    write_json_atomic(out / "metrics.json", metrics)
    if cfg.get("export", True):
        export(module.net, module.encoders, out / "export",
               config=OmegaConf.to_container(cfg, resolve=True), metrics=metrics,
               scan=scan)
    _report(metrics, out)
    floor = cfg.get("min_test_ndcg")
    if floor is not None and metrics["test/ndcg@10"] < float(floor):
        raise RuntimeError(f"test/ndcg@10 {metrics['test/ndcg@10']:.4f} is below min_test_ndcg {floor}")
    return metrics


def _report(metrics: Dict[str, float], out: Path) -> None:
    names = ["ndcg@10", "precision@10", "recall@10", "map@10", "mrr", "auc", "coverage@20"]
    lines = [f"{'metric':14s} {'model':>8s} {'popularity':>11s}"]
    for n in names:
        m, p = metrics.get(f"test/{n}"), metrics.get(f"popularity/{n}")
        if m is None:
            continue
        lines.append(f"{n:14s} {m:8.4f} {'-' if p is None else format(p, '11.4f'):>11s}")
    lines.append(f"fit_seconds {metrics['fit_seconds']:.1f}   run dir: {out}")
    print("\n".join(lines), flush=True)
