"""Bayesian tuning of ElasticRank, as the paper tunes it: a Gaussian process (Optuna's
``GPSampler``: Matérn 5/2 kernel with automatic relevance determination) over λ1, λ2 and the step
size (log scale), the Δ scheme, the pair loss and the optimiser, maximising the validation
metric of the held-out training lists (never the test lists).

Each trial composes its config with Hydra's compose API (the base overrides, then the trial's),
runs ``rankers.training.train.train`` into ``<out>/trial_<n>`` and reports the best validation
value. The study lives in a journal file (``<out>/study.log``): a later run with the same
``out`` resumes it (finished trials are kept; ``trials`` is the total). The best trial becomes
an experiment preset (every group choice and every value of its config, interpolations kept),
which ``python scripts/train.py experiment=<name>`` reproduces.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

OPTIMIZERS = ("fobos", "rda", "psgd", "tgd")
PRESET_GROUPS = ("data", "model", "loss", "optim", "trainer", "callbacks", "logger")
PRESET_KEYS = ("data", "model", "loss", "optim", "trainer", "callbacks", "eval", "seed", "baseline")


def suggest(trial) -> List[str]:
    """The trial's overrides: the search space."""
    opt = trial.suggest_categorical("optim", list(OPTIMIZERS))
    out = [f"optim={opt}", f"loss.delta={trial.suggest_categorical('delta', ['ndcg', 'recall'])}",
           f"loss.pair_loss={trial.suggest_categorical('pair_loss', ['logistic', 'hinge'])}",
           f"optim.l2={trial.suggest_float('l2', 1e-6, 1e-1, log=True)}"]
    if opt == "rda":
        out.append(f"optim.gamma={trial.suggest_float('gamma', 0.5, 50.0, log=True)}")
    else:
        out.append(f"optim.lr={trial.suggest_float('lr', 0.05, 5.0, log=True)}")
    if opt == "psgd":
        out.append(f"optim.threshold={trial.suggest_float('threshold', 1e-5, 1e-1, log=True)}")
    else:
        out.append(f"optim.l1={trial.suggest_float('l1', 1e-6, 1e-1, log=True)}")
    return out


def compose(overrides: Sequence[str], out_dir: Path, hydra_config: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import open_dict

    with initialize_config_module("rankers.conf", version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=hydra_config)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    return cfg


def objective_key(cfg) -> str:
    return f"{cfg.eval.monitor}_best"


def tune(base: Sequence[str], out: Path, trials: int, seed: int = 0):
    """Run (or resume) the study until it holds ``trials`` finished trials."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from rankers.training.train import train

    out.mkdir(parents=True, exist_ok=True)
    probe = compose(base, out / "probe")
    key = objective_key(probe)
    if not probe.data.get("val_lists"):
        raise ValueError("tuning needs held-out training lists: set data.val_lists > 0 (the test lists are never "
                         "looked at)")
    storage = JournalStorage(JournalFileBackend(str(out / "study.log")))
    study = optuna.create_study(study_name="elasticrank", storage=storage, direction="maximize",
                                sampler=optuna.samplers.GPSampler(seed=seed), load_if_exists=True)
    done = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])

    def objective(trial) -> float:
        overrides = [*base, *suggest(trial)]
        trial.set_user_attr("overrides", overrides)
        metrics = train(compose(overrides, out / f"trial_{trial.number}"))
        if key not in metrics:
            raise RuntimeError(f"the run reported no {key}: is validation on (data.val_lists > 0)?")
        return float(metrics[key])

    if trials > done:
        study.optimize(objective, n_trials=trials - done)
    return study


def write_preset(overrides: Sequence[str], path: Path) -> Path:
    """The config ``overrides`` compose as an experiment preset (``# @package _global_``): its
    group choices as defaults overrides, then the values of ``PRESET_KEYS`` (interpolations
    kept, so run directories stay each run's own). Written atomically."""
    cfg = compose(overrides, Path("."), hydra_config=True)
    choices = cfg.hydra.runtime.choices
    body = {k: OmegaConf.to_container(cfg[k], resolve=False) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in PRESET_KEYS if k in cfg}
    lines = ["# @package _global_", "# Written by rankers tune: the best trial's configuration.", "defaults:"]
    lines += [f"  - override /{g}: {choices[g]}" for g in PRESET_GROUPS if choices.get(g)]
    text = "\n".join(lines) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def plot_trials(study, path: Path) -> Path:
    """Each trial's value and the best so far, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.trials if t.value is not None]
    xs, ys = [t.number for t in done], [t.value for t in done]
    best = [max(ys[:i + 1]) for i in range(len(ys))]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours = {o: f"C{i}" for i, o in enumerate(OPTIMIZERS)}
    for o in OPTIMIZERS:
        pts = [(x, y) for x, y, t in zip(xs, ys, done) if t.params.get("optim") == o]
        if pts:
            ax.scatter(*zip(*pts), color=colours[o], label=o.upper(), s=18)
    ax.step(xs, best, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def summary(study) -> Dict[str, object]:
    best = study.best_trial
    return {"best_value": best.value, "best_trial": best.number, "params": best.params,
            "overrides": best.user_attrs.get("overrides", []), "trials": len(study.trials)}
