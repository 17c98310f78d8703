"""Bayesian tuning of ElasticRank: ``rankers tune --name NAME [--trials 30] -- OVERRIDES...``
(also ``python scripts/tune.py``). The overrides are the base run's (``experiment=elasticrank
data.source.train=... data.source.test=...``); each trial adds its λ1, λ2, step size, Δ scheme,
pair loss and optimiser (rankers.training.tuning). Resumes the study in ``--out``; writes the best
trial as ``<preset-dir>/experiment/<NAME>.yaml`` and a plot of the trials, and prints the command
that trains the preset."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="rankers tune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="the preset's name (experiment=NAME)")
    ap.add_argument("--trials", type=int, default=30, help="trials in the study, all runs together (default 30)")
    ap.add_argument("--out", type=Path, default=None, help="the study's directory (default outputs/tune/NAME)")
    ap.add_argument("--preset-dir", type=Path, default=Path("configs"),
                    help="a config directory of your own: the preset goes to <dir>/experiment/NAME.yaml (default "
                         "configs, which scripts/train.py searches)")
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    a, overrides = ap.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if a.trials < 1 or not a.name.replace("_", "").replace("-", "").isalnum():
        ap.error("--trials must be >= 1 and --name letters, digits, '_' or '-'")
    from rankers.training.tuning import plot_trials, summary, tune, write_preset

    out = a.out or Path("outputs") / "tune" / a.name
    try:
        study = tune(overrides, out, a.trials, a.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"rankers tune: {e}", file=sys.stderr)
        sys.exit(2)
    s = summary(study)
    preset = write_preset(s["overrides"], a.preset_dir / "experiment" / f"{a.name}.yaml")
    plot = plot_trials(study, out / "trials.png")
    print(json.dumps({k: s[k] for k in ("best_value", "best_trial", "params", "trials")}, indent=2))
    searchpath = "" if a.preset_dir == Path("configs") else f" hydra.searchpath=[file://{a.preset_dir}]"
    print(f"preset: {preset}\nplot: {plot}\ntrain it: python scripts/train.py{searchpath} experiment={a.name}")


if __name__ == "__main__":
    main()
