"""The offline gate: may a retrained model (the challenger) replace the one in production (the
champion)?

Both exports rank the catalogue for the same users of fresh held-out logs, as the service would
(``model.ts``'s ``recommend``, the stored history of a known user, features alone for a new
one); each user's held-out positives are the targets. Per user: NDCG@k and Recall@k of both, and
their paired difference (challenger - champion), whose mean comes with a 95% confidence interval
(normal, over users). The challenger is accepted when it is not worse by more than ``margin``:
the interval's lower end is at least -margin (a non-inferiority test on the chosen metric).

Events that follow a recommendation (they carry a request_id) were caused by what the
champion showed, so they favour the champion; ``organic_only`` evaluates on the other events
alone (a shop's browsing and buying that no ranking of ours led to).

The held-out events must come after everything either model was trained on (its export's
``data_last_timestamp``): an event the challenger trained on would flatter it, so such logs are
refused (``LeakageError``), not trimmed silently; ``since`` keeps only the later events.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from rankers.artifact.writer import write_json_atomic
from rankers.metrics.ranking import ndcg_at_k, recall_at_k
from rankers.production import Z95
from rankers.production.logs import Paths, read_events

log = logging.getLogger(__name__)
# How much worse (absolute, on the gate's metric) a challenger may be. The held-out users decide
# the interval's width: with a few hundred, an equal model's lower end sits near -0.01.
DEFAULT_MARGIN = 0.01



class LeakageError(ValueError):
    """The held-out logs overlap what a model was trained on."""


@dataclass
class Side:
    """One model's figures: per-user means with their standard errors."""

    path: str
    version: str
    ndcg: float
    ndcg_se: float
    recall: float
    recall_se: float


@dataclass
class GateReport:
    """What the gate decided and why (written as JSON either way)."""

    accepted: bool
    reason: str
    metric: str
    k: int
    margin: float
    users: int
    targets: int
    events_from: float
    events_to: float
    champion: Side
    challenger: Side
    difference: float
    difference_ci: List[float]
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())

    def text(self) -> str:
        c, h = self.champion, self.challenger
        lo, hi = self.difference_ci
        return "\n".join([
            f"{'':12s} {'NDCG@' + str(self.k):>17s} {'Recall@' + str(self.k):>17s}   ({self.users} users, "
            f"{self.targets} held-out positives; ± one standard error)",
            f"{'champion':12s} {c.ndcg:8.4f} ± {c.ndcg_se:.4f} {c.recall:8.4f} ± {c.recall_se:.4f}   {c.version}",
            f"{'challenger':12s} {h.ndcg:8.4f} ± {h.ndcg_se:.4f} {h.recall:8.4f} ± {h.recall_se:.4f}   {h.version}",
            f"{self.metric} challenger - champion: {self.difference:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], "
            f"margin {self.margin}",
            f"{'ACCEPTED' if self.accepted else 'REFUSED'}: {self.reason}"])


def _meta(export: Path) -> dict:
    f = Path(export) / "metadata.json"
    if not f.is_file():
        raise FileNotFoundError(f"{export}: not an export directory (no metadata.json)")
    return json.loads(f.read_text())


def check_window(events: pd.DataFrame, exports: Dict[str, Path]) -> None:
    """Refuse held-out events at or before the last event a model was trained on."""
    first = float(events["timestamp"].min())
    for name, path in exports.items():
        last = _meta(path).get("metrics", {}).get("data_last_timestamp")
        if last is None:
            log.warning("%s %s does not record the events it was trained on (exported before windows were "
                        "recorded): the held-out logs cannot be checked against it", name, path)
            continue
        inside = int((events["timestamp"] <= last).sum())
        if inside:
            raise LeakageError(
                f"{inside} of the {len(events)} held-out events (from {_when(first)}) are not after the last event "
                f"the {name} ({path}) was trained on ({_when(last)}): evaluating on them would reward what it "
                f"memorised. Give logs from after its training window, or --since {last:.0f}")


def _when(t: float) -> str:
    try:
        return f"{_dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat()} (timestamp {t:.0f})"
    except (OverflowError, OSError, ValueError):
        return f"timestamp {t:g}"


def targets_of(events: pd.DataFrame, positive_threshold: float, max_users: Optional[int],
               seed: int) -> pd.DataFrame:
    """Distinct held-out positives (user_id, item_id), for a seeded sample of ``max_users`` users."""
    pos = events.loc[events["grade"] >= positive_threshold, ["user_id", "item_id"]].drop_duplicates()
    users = np.sort(pos["user_id"].unique())
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        pos = pos[pos["user_id"].isin(users)]
    return pos.reset_index(drop=True)


def top_lists(export: Path, users: np.ndarray, k: int) -> pd.DataFrame:
    """model.ts's top-k for each user (no exclusions, no request features: what ``/recommend``
    returns for the user id alone) -> (user_id, item_id, rank 1..k)."""
    module = torch.jit.load(str(Path(export) / "model.ts"), map_location="cpu")
    us, items, ranks = [], [], []
    with torch.no_grad():
        for u in users:  # one model call per user, as the service makes them
            ids, _ = module.recommend(str(u), {}, k, [])
            us.extend([u] * len(ids))
            items.extend(ids)
            ranks.extend(range(1, len(ids) + 1))
    return pd.DataFrame({"user_id": us, "item_id": items, "rank": ranks})


def per_user(targets: pd.DataFrame, top: pd.DataFrame, users: np.ndarray, k: int) -> Dict[str, np.ndarray]:
    """Per-user NDCG@k and Recall@k [U] (users in ``users`` order) from targets and top-k lists."""
    t = targets.merge(top, on=["user_id", "item_id"], how="left")
    t["rank"] = t["rank"].fillna(k + 1)  # a target outside the top k: ranked, not a hit
    row = pd.Index(users).get_indexer(t["user_id"])
    n_pos = np.bincount(row, minlength=len(users))
    order = np.argsort(row, kind="stable")
    r = row[order]
    col = np.arange(len(r)) - (np.cumsum(n_pos) - n_pos)[r]  # each target's slot in its user's row
    ranks = np.zeros((len(users), max(1, int(n_pos.max()) if len(users) else 1)))
    ranks[r, col] = t["rank"].to_numpy(np.float64)[order]
    return {"ndcg": ndcg_at_k(ranks, n_pos, k), "recall": recall_at_k(ranks, n_pos, k)}


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def evaluate(challenger: Path, champion: Path, data: Paths, *, k: int = 10, metric: str = "ndcg",
             margin: float = DEFAULT_MARGIN, positive_threshold: float = 2.0, max_users: Optional[int] = 5000,
             since: Optional[float] = None, organic_only: bool = False, seed: int = 0) -> GateReport:
    """Both exports on the same held-out users; the decision (see the module docstring)."""
    if metric not in ("ndcg", "recall"):
        raise ValueError(f"metric must be ndcg or recall, got {metric!r}")
    if k < 1 or margin < 0:
        raise ValueError(f"k must be >= 1 and margin >= 0, got {k}, {margin}")
    exports = {"challenger": Path(challenger), "champion": Path(champion)}
    metas = {n: _meta(p) for n, p in exports.items()}
    events = read_events(data)
    if since is not None:
        events = events[events["timestamp"] >= since]
    if organic_only:
        events = events[events["request_id"] == ""]
    if len(events) == 0:
        raise ValueError(f"no held-out events{'' if since is None else f' from {since} on'}"
                         f"{' without a request_id' if organic_only else ''} in {data}")
    check_window(events, exports)
    targets = targets_of(events, positive_threshold, max_users, seed)
    if len(targets) == 0:
        raise ValueError(f"the held-out logs have no positive (grade >= {positive_threshold}): nothing to evaluate")
    users = np.sort(targets["user_id"].unique())
    scores = {n: per_user(targets, top_lists(p, users, k), users, k) for n, p in exports.items()}
    sides = {n: Side(str(exports[n]), metas[n].get("version", "?"), *_mean_se(scores[n]["ndcg"]),
                     *_mean_se(scores[n]["recall"])) for n in exports}
    d = scores["challenger"][metric] - scores["champion"][metric]
    diff, se = _mean_se(d)
    lo, hi = diff - Z95 * se, diff + Z95 * se
    accepted = bool(lo >= -margin)
    name = f"{metric}@{k}"
    reason = (f"the challenger's {name} is not worse than the champion's by more than {margin} (95% CI lower end "
              f"{lo:+.4f} >= -{margin})" if accepted else
              f"the challenger's {name} may be worse than the champion's by more than {margin} (95% CI lower end "
              f"{lo:+.4f} < -{margin})")
    return GateReport(accepted, reason, name, k, margin, len(users), len(targets), float(events["timestamp"].min()),
                      float(events["timestamp"].max()), sides["champion"], sides["challenger"], diff, [lo, hi])


def write_report(report: GateReport, path: Path) -> Path:
    write_json_atomic(Path(path), asdict(report))
    return Path(path)
