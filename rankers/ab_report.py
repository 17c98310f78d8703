"""The A/B read-out: ``rankers ab-report --impressions LOG --events LOG`` (also ``python
scripts/ab_report.py``). Joins the service's impression log (with its rotated files) and event
log by request_id and prints, per variant, impressions and click, cart and purchase rates, and
each variant's difference from the control with a 95% confidence interval (clustered by user);
writes a PNG of the rates over time. Exit status 0, or 2 on bad input."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from rankers.data.dataset import time_window
from rankers.data.errors import DataError


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="rankers ab-report", description=__doc__)
    ap.add_argument("--impressions", nargs="+", required=True,
                    help="the service's impressions_path (its rotated files beside it are read too)")
    ap.add_argument("--events", nargs="+", required=True, help="the service's events_path")
    ap.add_argument("--since", default=None, help="only impressions from this time on (a number, or an ISO date)")
    ap.add_argument("--until", default=None, help="only impressions before this time")
    ap.add_argument("--control", default=None, help="the variant the others are compared with (default: champion)")
    ap.add_argument("--plot", default="ab_report.png", help="where to write the PNG (default ab_report.png)")
    ap.add_argument("--bins", type=int, default=24, help="time bins of the plot (default 24)")
    ap.add_argument("--no-plot", action="store_true", help="print the figures only")
    a = ap.parse_args(argv)
    from rankers.production.abtest import plot, readout
    from rankers.production.logs import read_events, read_impressions

    try:
        since, until = time_window(a.since, a.until, ("--since", "--until"))
        imp = read_impressions(a.impressions)
        imp = imp[(imp["timestamp"] >= (since if since is not None else -float("inf")))
                  & (imp["timestamp"] < (until if until is not None else float("inf")))]
        r = readout(imp, read_events(a.events), a.control)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"rankers ab-report: {e}", file=sys.stderr)
        sys.exit(2)
    print(r.text())
    if not a.no_plot:
        print(f"plot: {plot(r, Path(a.plot), a.bins)}")


if __name__ == "__main__":
    main()
