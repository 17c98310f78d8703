"""The production loop, simulated: ``rankers simulate --workdir DIR`` (also ``python
scripts/simulate.py``). Serves the synthetic shop's users, logs impressions and events, retrains
warm, gates, swaps under load and reads the A/B test out, cycle by cycle
(rankers.production.simulate); prints one line per cycle, then the checks: failed requests,
requests against logged impressions, swaps served. Exit status 1 when a check fails."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> None:
    from rankers.production.simulate import Simulation, SimulationConfig

    defaults = {f.name: f.default for f in fields(SimulationConfig)}
    ap = argparse.ArgumentParser(prog="rankers simulate", description=__doc__)
    ap.add_argument("--workdir", required=True, help="a new directory: logs, runs, exports, deploy links")
    for name in ("cycles", "users", "items", "requests", "k", "first_epochs", "first_retrain_epochs", "concurrency",
                 "impressions_max_bytes", "seed"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=defaults[name])
    for name in ("first_lr", "mean_views", "organic", "organic_views", "train_share", "challenger_share", "margin",
                 "position_bias"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=defaults[name])
    ap.add_argument("--random-cycle", type=int, default=defaults["random_cycle"],
                    help="the cycle whose candidate is the champion with random weights (0: none)")
    ap.add_argument("--ab-refused", action="store_true",
                    help="A/B-test a candidate the gate refused too (to check the read-out against the gate)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "rankers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    cfg = SimulationConfig(**{**vars(a), "random_cycle": a.random_cycle or None})
    sim = Simulation(cfg)
    results = sim.run()
    failed = sum(r.traffic.failed for r in results)
    swaps = [s for r in results for s in r.swaps]
    print(f"\nrequests answered {sim.requests_ok}, failed {failed}; impressions logged {sim.impressions_logged} "
          f"in {sim.impression_files} files (lost {sim.requests_ok - sim.impressions_logged}); swaps {len(swaps)}, "
          f"all served, slowest {max(swaps, default=0.0):.2f} s")
    last = next((r.ab for r in reversed(results) if r.ab is not None), None)
    if last is not None:
        print("\nthe last A/B read-out:\n" + last.text())
    sys.exit(0 if failed == 0 and sim.requests_ok == sim.impressions_logged else 1)


if __name__ == "__main__":
    main()
