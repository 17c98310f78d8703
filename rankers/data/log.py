"""Interaction logs: validation, grading and de-duplication.

A log is a table of (user_id, item_id, event, timestamp[, weight]) rows. Ids are
strings. ``event`` is either a named event graded by a ``grades`` mapping
(view < cart < purchase) or an explicit numeric rating that is its own grade.

Duplicate (user, item) rows are resolved by one rule (``EventLog.deduplicate``): keep the
row with the highest grade (the latest such row when grades tie), so an interaction is
never counted twice.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
import pandas as pd

from rankers.data.errors import DataError
from rankers.data.events import DEFAULT_GRADES, EVENT_LOG_COLUMNS
from rankers.data.ids import normalise_ids

__all__ = ["DEFAULT_GRADES", "read_table", "validate_log", "numeric_column"]

log = logging.getLogger(__name__)
REQUIRED = ("user_id", "item_id", "event")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # grades and weights are float32 downstream


def read_table(path: str | Path, *, sep: str = ",") -> pd.DataFrame:
    """Read a CSV table with every column as text (parsing is ours, so errors name rows), or a
    Parquet file or directory as it is typed."""
    from rankers.data.parquet import is_parquet, is_uri, read_frame

    if is_uri(path):
        if str(path).endswith((".csv", ".tsv", ".txt")):
            raise DataError("CSV is read from local paths; from a URI, give Parquet", source=str(path))
        return read_frame(path)
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if is_parquet(path):
        return read_frame(path)
    # The service's event log ends every row with a newline: a last row without one was torn by
    # a crash mid-write, and the log is read up to its last complete row.
    end = complete_end(path) if sep == "," and _header(path) == ",".join(EVENT_LOG_COLUMNS) else None
    try:
        with open(path, "rb") as f:
            return pd.read_csv(f if end is None else io.BufferedReader(Head(f, end)), sep=sep, dtype=str,
                               keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot parse: {e}", source=str(path)) from e


def _header(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline(4096).decode("utf-8", "replace").rstrip("\r\n")


def complete_end(path: Union[str, Path], chunk: int = 1 << 16) -> Optional[int]:
    """Where the complete lines of an append-only log end: None when the file ends with a newline
    (or is empty), else the offset just past its last newline (0: no complete line), with a
    warning naming the file and the torn line's size. Reads the file's tail, not the file."""
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                end = start + i + 1
                break
            pos = start
        else:
            end = 0
    log.warning("%s: the last line (%d bytes) is incomplete, a write cut short; read up to the last complete line",
                path, size - end)
    return end


class Head(io.RawIOBase):
    """The first ``n`` bytes of an open binary file, as a readable stream."""

    def __init__(self, f, n: int):
        self.f, self.left = f, n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.left <= 0:
            return 0
        data = self.f.read(min(len(b), self.left))
        b[:len(data)] = data
        self.left -= len(data)
        return len(data)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def numeric_column(values: pd.Series, source: str, column: str, what: str, limit: float = 1e300) -> np.ndarray:
    """A column parsed as float64; the first cell that is not a finite number of magnitude at
    most ``limit`` and, unless 0, at least 1e-300 (the range the tokenizer parses at serving
    time) is a DataError naming source, column and row ("{what} must be a finite number ...")."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        for bad, rule in [(~np.isfinite(v) | (np.abs(v) > limit), f"a finite number within +-{limit:g}"),
                          ((v != 0) & (np.abs(v) < 1e-300), "0 or at least 1e-300 in magnitude")]:
            if bad.any():
                r = _first_bad(bad)
                raise DataError(f"{what} must be {rule}, got {values.iloc[r]!r}", source=source, column=column,
                                row=r)
    return v


def validate_log(df: pd.DataFrame, source: str, grades: Mapping[str, float] | None = None,
                 rating_scale: tuple[float, float] | None = None) -> pd.DataFrame:
    """Check and normalise one log table.

    Args:
        df: raw table with columns user_id, item_id, event, optional timestamp, weight.
        source: file or table name used in error messages.
        grades: event name -> grade. None means ``event`` holds numeric ratings.
        rating_scale: (lo, hi) allowed for numeric ratings; outside is an error.

    Returns:
        A frame with columns user_id (str), item_id (str), grade (float32),
        timestamp (float64; row order when absent), weight (float32; 1 when absent),
        in the input's row order. Rows numbers in errors are 0-based data rows.
    """
    if len(df) == 0:
        raise DataError("the interaction log is empty", source=source)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(df.columns)}", source=source)
    out = pd.DataFrame(index=range(len(df)))
    for col in ("user_id", "item_id"):
        out[col] = normalise_ids(df[col], source, col)
    ev = df["event"]
    if grades is not None:
        names = ev.astype(str).str.strip().str.lower()
        g = names.map({k.lower(): float(v) for k, v in grades.items()})
        bad = g.isna().to_numpy()
        if bad.any():
            r = _first_bad(bad)
            raise DataError(f"unknown event {ev.iloc[r]!r}; known events {sorted(grades)}",
                            source=source, column="event", row=r)
        out["grade"] = g.to_numpy(np.float32)
    else:
        g = numeric_column(ev, source, "event", "a rating", limit=FLOAT32_MAX)
        if rating_scale is not None:
            lo, hi = rating_scale
            bad = (g < lo) | (g > hi)
            if bad.any():
                r = _first_bad(bad)
                raise DataError(f"rating {g[r]:g} outside the scale [{lo:g}, {hi:g}]",
                                source=source, column="event", row=r)
        out["grade"] = g.astype(np.float32)
    if "timestamp" in df.columns:
        out["timestamp"] = numeric_column(df["timestamp"], source, "timestamp", "a timestamp")
    else:
        out["timestamp"] = np.arange(len(df), dtype=np.float64)
    if "weight" in df.columns:
        w = numeric_column(df["weight"], source, "weight", "a weight", limit=FLOAT32_MAX)
        if (w < 0).any():
            r = _first_bad(w < 0)
            raise DataError(f"a weight must be >= 0, got {df['weight'].iloc[r]!r}", source=source, column="weight",
                            row=r)
        out["weight"] = w.astype(np.float32)
    else:
        out["weight"] = np.ones(len(df), np.float32)
    return out
