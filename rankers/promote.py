"""The offline gate and deploy: ``rankers promote CHALLENGER --champion deploy/current --data LOGS``
(also ``python scripts/promote.py``).

Evaluates the challenger export and the champion (the export the symlink points at) on the same
fresh held-out logs (rankers.production.gate), writes a report (JSON) either way, and repoints
the symlink at the challenger atomically when it is accepted. Exit status: 0 accepted (and
deployed, unless --dry-run), 1 refused by the gate, 2 not evaluated (bad input, or held-out logs
that overlap what a model was trained on)."""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from rankers.data.dataset import time_bound
from rankers.data.errors import DataError


def main(argv: Optional[Sequence[str]] = None) -> None:
    from rankers.production.gate import DEFAULT_MARGIN

    ap = argparse.ArgumentParser(prog="rankers promote", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("challenger", help="the retrained model's export directory")
    ap.add_argument("--champion", required=True,
                    help="the symlink the service loads (its model_path), pointing at the champion's export")
    ap.add_argument("--data", nargs="+", required=True,
                    help="held-out logs from after the challenger's training window (the service's events.csv, "
                         "or any CSV/Parquet log that data=files reads)")
    ap.add_argument("--metric", choices=("ndcg", "recall"), default="ndcg", help="the metric the gate decides on")
    ap.add_argument("--k", type=int, default=10, help="cut-off of the metrics (default 10)")
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                    help="how much worse (absolute) the challenger may be: accepted when the 95%% CI of the "
                         f"paired difference has its lower end at or above -margin (default {DEFAULT_MARGIN})")
    ap.add_argument("--positive-threshold", type=float, default=2.0,
                    help="grade from which a held-out event is a target (default 2: cart and purchase)")
    ap.add_argument("--max-users", type=int, default=5000,
                    help="evaluate a seeded sample of this many held-out users (default 5000; 0 = all)")
    ap.add_argument("--since", default=None,
                    help="only held-out events from this time on (a number in the log's unit, or an ISO date)")
    ap.add_argument("--organic-only", action="store_true",
                    help="evaluate on the events without a request_id only: those that follow a recommendation "
                         "were caused by what the champion showed, and favour it")
    ap.add_argument("--report", default=None,
                    help="where to write the JSON report (default: gate-reports/<time>-<version>.json beside "
                         "the champion link)")
    ap.add_argument("--dry-run", action="store_true", help="decide and report, but never repoint")
    a = ap.parse_args(argv)
    sys.exit(promote(a))


def promote(a: argparse.Namespace) -> int:
    from rankers.production.gate import LeakageError, evaluate, write_report
    from rankers.serving.model import repoint

    link, challenger = Path(a.champion), Path(a.challenger)
    if not link.is_symlink():
        what = "a directory, not a symlink" if link.exists() else "missing"
        return _fail(f"--champion {link} is {what}: give the symlink the service loads (model_path), which "
                     f"promote repoints (create it once: ln -s <export> {link})")
    if not (challenger / "metadata.json").is_file():
        return _fail(f"{challenger}: not an export directory (no metadata.json)")
    if os.path.realpath(challenger) == os.path.realpath(link):
        return _fail(f"{challenger} is already the champion ({link} points at it)")
    try:
        report = evaluate(challenger, link, a.data, k=a.k, metric=a.metric, margin=a.margin,
                          positive_threshold=a.positive_threshold, max_users=a.max_users or None,
                          since=time_bound(a.since, "--since"), organic_only=a.organic_only)
    except (LeakageError, DataError, ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = Path(a.report) if a.report else link.parent / "gate-reports" / f"{stamp}-{report.challenger.version}.json"
    write_report(report, path)
    print(report.text())
    print(f"report: {path}")
    if report.accepted and not a.dry_run:
        repoint(link, challenger)
        print(f"deployed: {link} -> {os.path.realpath(link)}")
    return 0 if report.accepted else 1


def _fail(msg: str) -> int:
    print(f"rankers promote: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    main()
