"""The ``rankers`` command: ``rankers {train,export,serve,promote,ab-report,simulate} ...``
(``python -m rankers ...`` too).

Each sub-command is its module's ``main`` (``rankers.train``, ``rankers.export``,
``rankers.serve``, ``rankers.promote``, ``rankers.ab_report``, ``rankers.simulate``), which
reads the rest of the command line: Hydra overrides for train and serve, arguments for the others."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import List, Optional, Sequence

COMMANDS = {
    "train": ("rankers.train", "train a ranker (Hydra overrides; -m for sweeps)"),
    "export": ("rankers.export", "export a checkpoint: model.ts, model.pt2, lookups.json, metadata.json"),
    "serve": ("rankers.serve", "serve an export over REST (Hydra overrides: model_path=... port=...)"),
    "promote": ("rankers.promote", "offline gate: a retrained export against the deployed one; repoint if fit"),
    "ab-report": ("rankers.ab_report", "A/B read-out: impressions joined with events, rates per variant with CIs"),
    "simulate": ("rankers.simulate", "the production loop simulated: serve, log, retrain warm, gate, swap, A/B"),
    "tune": ("rankers.tune", "Bayesian tuning of ElasticRank (Optuna's GP); the best as an experiment preset"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rankers COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "rankers COMMAND --help shows a command's own options."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"rankers: unknown command {name!r}; the commands are {', '.join(COMMANDS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    sys.argv = [f"rankers {name}", *rest]  # what Hydra and argparse read
    importlib.import_module(COMMANDS[name][0]).main()
    return 0


def searchpath_dirs(overrides: Sequence[str]) -> List[str]:
    """The ``file://`` directories that a ``hydra.searchpath=[...]`` override names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out: List[str] = []
    for o in overrides:
        if o.lstrip("+~").startswith("hydra.searchpath="):
            value = OverridesParser.create().parse_overrides([o])[0].value()
            for entry in value if isinstance(value, list) else [value]:
                if str(entry).startswith("file://"):
                    out.append(str(entry)[len("file://"):])
    return out


def check_searchpath(argv: Optional[Sequence[str]] = None) -> None:
    """Exit with an error naming a user config directory (``hydra.searchpath=[file://DIR]``)
    that does not exist: Hydra would skip it silently, and ``experiment=my_preset`` would then
    fail as an unknown option."""
    for d in searchpath_dirs(sys.argv[1:] if argv is None else argv):
        if not Path(d).is_dir():
            raise SystemExit(f"hydra.searchpath: the config directory {d!r} does not exist "
                             f"(from {Path.cwd()}); give an existing directory as file://DIR")
