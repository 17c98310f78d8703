"""The A/B read-out: what each variant showed (the impression log) joined with what people did
(the event log, by ``request_id``).

An event counts for an impression when it carries the impression's request id and its item was
among the items shown (attributed). Per impression, three outcomes, a funnel: a click (any
attributed event: a view, cart or purchase follows a click), a cart (an attributed cart or
purchase), a purchase. A variant's rate of an outcome is the share of its impressions that had
it. Users, not impressions, were assigned to variants (``rankers.serving.ab``), and one user's
impressions are not independent: each rate's standard error is the delta-method one over users
(a ratio of per-user sums), and the difference of two variants' rates gets a 95% confidence
interval from both. A variant wins an outcome when the interval excludes 0.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from rankers.data.events import DEFAULT_GRADES
from rankers.production import Z95
from rankers.serving.ab import CHAMPION

OUTCOMES = {"click": DEFAULT_GRADES["view"], "cart": DEFAULT_GRADES["cart"], "purchase": DEFAULT_GRADES["purchase"]}


@dataclass
class Rate:
    """An outcome's rate in one variant: value, standard error (clustered by user)."""

    value: float
    se: float


@dataclass
class Comparison:
    """variant - control for one outcome: the difference, its 95% CI, and the verdict."""

    variant: str
    outcome: str
    difference: float
    ci: List[float]
    winner: Optional[str]  # the variant whose rate is higher at 95% confidence; None: no winner yet


@dataclass
class ABReadout:
    """Per variant: impressions, users, rates; the comparisons with the control; the join's counts."""

    control: str
    impressions: Dict[str, int]
    users: Dict[str, int]
    rates: Dict[str, Dict[str, Rate]]
    comparisons: List[Comparison]
    attributed_events: int
    unattributed_events: int
    # one row per impression: request_id, timestamp, variant, cluster, and a 0/1 column per outcome
    outcomes: pd.DataFrame

    def text(self) -> str:
        names = list(OUTCOMES)
        lines = [f"{'variant':12s} {'impressions':>11s} {'users':>7s} " +
                 " ".join(f"{n + ' rate':>17s}" for n in names) + "   (± one standard error, clustered by user)"]
        for v in self.impressions:
            lines.append(f"{v:12s} {self.impressions[v]:11d} {self.users[v]:7d} " + " ".join(
                f"{self.rates[v][n].value:8.4f} ± {self.rates[v][n].se:.4f}" for n in names))
        for c in self.comparisons:
            verdict = f"{c.winner} wins" if c.winner else "no winner at 95%"
            lines.append(f"{c.outcome:8s} {c.variant} - {self.control}: {c.difference:+.4f}, 95% CI "
                         f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]: {verdict}")
        lines.append(f"{self.attributed_events} events joined to an impression; {self.unattributed_events} not "
                     "(no request_id, an unknown one, or an item that was not shown)")
        return "\n".join(lines)


def impression_outcomes(impressions: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per impression, 0/1 per outcome (``OUTCOMES``), and the number of events attributed."""
    shown = impressions[["request_id", "items"]].explode("items").dropna(subset=["items"])
    shown = shown.rename(columns={"items": "item_id"})
    shown["item_id"] = shown["item_id"].astype(str)
    hit = events.loc[events["request_id"] != "", ["request_id", "item_id", "grade"]].merge(
        shown.drop_duplicates(), on=["request_id", "item_id"], how="inner")
    best = hit.groupby("request_id")["grade"].max()
    g = impressions["request_id"].map(best).fillna(0.0).to_numpy()
    out = impressions[["request_id", "timestamp", "variant"]].copy()
    # the randomisation unit: the user (an anonymous request is its own)
    out["cluster"] = np.where(impressions["user_id"] != "", "u:" + impressions["user_id"],
                              "r:" + impressions["request_id"])
    for name, grade in OUTCOMES.items():
        out[name] = (g >= grade).astype(np.float64)
    return out, len(hit)


def clustered_rate(df: pd.DataFrame, outcome: str) -> Rate:
    """Σ outcome / impressions, with the delta-method standard error over clusters (users)."""
    per = df.groupby("cluster")[outcome].agg(["sum", "count"])
    c, n = per["sum"].to_numpy(), per["count"].to_numpy(np.float64)
    m = len(per)
    r = c.sum() / n.sum()
    if m < 2:
        return Rate(float(r), float("nan"))
    resid = c - r * n
    return Rate(float(r), float(np.sqrt((resid ** 2).sum() / (m - 1) / m) / n.mean()))


def readout(impressions: pd.DataFrame, events: pd.DataFrame, control: Optional[str] = None) -> ABReadout:
    """The read-out of impressions (``read_impressions``) and events (``read_events``)."""
    if len(impressions) == 0:
        raise ValueError("no impressions: nothing to read out (is impressions_path set in the service's config?)")
    outcomes, attributed = impression_outcomes(impressions, events)
    variants = sorted(outcomes["variant"].unique())
    control = control or (CHAMPION if CHAMPION in variants else variants[0])
    if control not in variants:
        raise ValueError(f"control variant {control!r} has no impressions; variants: {variants}")
    groups = {v: outcomes[outcomes["variant"] == v] for v in variants}
    rates = {v: {o: clustered_rate(g, o) for o in OUTCOMES} for v, g in groups.items()}
    comparisons = []
    for v in variants:
        if v == control:
            continue
        for o in OUTCOMES:
            a, b = rates[v][o], rates[control][o]
            d, se = a.value - b.value, float(np.hypot(a.se, b.se))
            lo, hi = d - Z95 * se, d + Z95 * se
            comparisons.append(Comparison(v, o, d, [lo, hi], v if lo > 0 else control if hi < 0 else None))
    return ABReadout(control, {v: len(g) for v, g in groups.items()},
                     {v: int(g["cluster"].nunique()) for v, g in groups.items()}, rates, comparisons,
                     attributed, int(len(events) - attributed), outcomes)


def plot(r: ABReadout, path: Path, bins: int = 24) -> Path:
    """Each outcome's rate per variant over time (impressions in ``bins`` equal time bins), as a
    PNG written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # the plot is optional: the figures are printed either way
        raise RuntimeError("the A/B plot needs matplotlib: pip install matplotlib (or pass --no-plot)") from e
    df = r.outcomes
    edges = np.linspace(df["timestamp"].min(), df["timestamp"].max() + 1e-9, bins + 1)
    df = df.assign(bin=np.clip(np.searchsorted(edges, df["timestamp"], side="right") - 1, 0, bins - 1))
    fig, axes = plt.subplots(1, len(OUTCOMES), figsize=(5 * len(OUTCOMES), 3.6), squeeze=False)
    t0, span = edges[0], edges[-1] - edges[0]
    unit, scale = ("days", 86400.0) if span > 3 * 86400 else ("hours", 3600.0) if span > 3 * 3600 else \
        ("minutes", 60.0)
    for ax, o in zip(axes[0], OUTCOMES):
        for v, g in df.groupby("variant"):
            per = g.groupby("bin")[o].mean()
            ax.plot((edges[per.index] - t0) / scale, per.to_numpy(), marker=".", label=v)
        ax.set_title(f"{o} rate")
        ax.set_xlabel(f"{unit} since the first impression")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
