"""Reading what the service logged, for the offline gate and the A/B read-out.

- The impression log (``rankers.serving.impressions``): JSON lines, rotated; a path reads the
  live file and its rotated predecessors.
- The event log (``rankers.serving.events``) or any log ``data=files`` reads: the same reader
  (``rankers.data.log.read_table`` + ``validate_log``), so ids follow the same rules.
Both logs end every line with a newline: a last line without one was torn by a crash mid-write
and is left out with a warning; a broken line anywhere else is a DataError naming file and line.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Union

import numpy as np
import pandas as pd

from rankers.data.errors import DataError
from rankers.data.events import DEFAULT_GRADES
from rankers.data.log import complete_end, read_table, validate_log
from rankers.serving.impressions import log_files

IMPRESSION_COLUMNS = ("request_id", "timestamp", "user_id", "variant", "model_version", "items")
Paths = Union[str, Path, Iterable[Union[str, Path]]]


def _paths(paths: Paths) -> List[Path]:
    return [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]


def read_impressions(paths: Paths) -> pd.DataFrame:
    """Impressions from impression logs (each path: a live file, read with its rotated
    predecessors) -> a frame with IMPRESSION_COLUMNS (``items``: the ids shown, top first),
    one row per response."""
    frames = []
    for path in _paths(paths):
        files = log_files(path)
        if not files:
            raise DataError("no impression log here (nor rotated files beside it)", source=str(path))
        frames.extend(_impression_file(f) for f in files)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IMPRESSION_COLUMNS)
    dup = out["request_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(f"request_id {out['request_id'].iloc[int(np.flatnonzero(dup)[0])]!r} is logged twice "
                        "(the same file given twice?)", source=", ".join(str(p) for p in _paths(paths)))
    return out


def _impression_file(path: Path) -> pd.DataFrame:
    end = complete_end(path)
    with open(path, "rb") as f:
        data = (f.read() if end is None else f.read(end)).decode("utf-8", "replace")
    if not data.strip():
        return pd.DataFrame(columns=IMPRESSION_COLUMNS)
    try:  # one C parse for the whole file; the line-by-line pass below only names a broken line
        df = pd.read_json(io.StringIO(data), lines=True, dtype=False)
    except ValueError:
        for n, line in enumerate(data.splitlines(), 1):
            try:
                json.loads(line)
            except ValueError as e:
                raise DataError(f"line {n} is not a JSON object ({e})", source=str(path)) from None
        raise
    missing = [c for c in IMPRESSION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing field(s) {missing} in the impression lines; found {list(df.columns)}",
                        source=str(path))
    df = df[list(IMPRESSION_COLUMNS)].copy()
    df["timestamp"] = pd.to_numeric(df["timestamp"], errors="coerce")
    bad = df["timestamp"].isna().to_numpy() | df["request_id"].isna().to_numpy()
    if bad.any():
        raise DataError(f"line {int(np.flatnonzero(bad)[0]) + 1} has no request_id or timestamp", source=str(path))
    df["request_id"] = df["request_id"].astype(str)
    df["user_id"] = df["user_id"].fillna("").astype(str)
    df["variant"] = df["variant"].astype(str)
    df["model_version"] = df["model_version"].fillna("").astype(str)
    return df


def read_events(paths: Paths, grades: Optional[Mapping[str, float]] = None) -> pd.DataFrame:
    """Events from event logs (CSV or Parquet, the service's or any ``data=files`` log) -> a frame
    with user_id, item_id (str), event (str, lower case), grade (float32), timestamp (float64) and,
    where the log has them, variant, model_version, request_id (str; "" when absent)."""
    grades = dict(DEFAULT_GRADES if grades is None else grades)
    frames = []
    for path in _paths(paths):
        raw = read_table(path)
        v = validate_log(raw, str(path), grades)
        out = pd.DataFrame({"user_id": v["user_id"], "item_id": v["item_id"],
                            "event": raw["event"].astype(str).str.strip().str.lower().to_numpy(),
                            "grade": v["grade"], "timestamp": v["timestamp"]})
        for c in ("variant", "model_version", "request_id"):
            out[c] = raw[c].fillna("").astype(str).to_numpy() if c in raw.columns else ""
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


__all__ = ["read_impressions", "read_events", "IMPRESSION_COLUMNS"]
