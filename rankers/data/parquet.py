"""Logs and tables in Parquet: one file or a directory of them (what Spark, Dask or a warehouse
export writes), read with pyarrow file by file and checked column by column in Arrow, so that
no row becomes a Python object: ids are dictionary-encoded, and only the distinct ids ever
become strings. An error names the file, the column and the row within that file.

A location is a local path or a URI of one of pyarrow's filesystems (``s3://bucket/logs/``,
``gs://...``, ``hdfs://...``, ``file:///...``), so that the processes of a run on several
machines can read the same object-store export; credentials come from the environment, as
pyarrow reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping

import numpy as np
import pandas as pd

from rankers.data.errors import DataError
from rankers.data.eventlog import CODE, EventLog

SUFFIXES = (".parquet", ".pq")


def is_uri(path: str | Path) -> bool:
    return "://" in str(path)


def is_parquet(path: str | Path) -> bool:
    """Parquet: a URI (object stores hold Parquet only here), a directory, or a Parquet suffix."""
    if is_uri(path):
        return True
    path = Path(path)
    return path.is_dir() or path.suffix in SUFFIXES


@dataclass(frozen=True)
class ParquetFile:
    """One file to read: its filesystem, its path there, and the name errors give it."""

    fs: Any
    path: str
    name: str

    def __str__(self) -> str:
        return self.name

    def read(self):
        pa, _, pq = _pyarrow()
        try:
            return pq.read_table(self.path, filesystem=self.fs)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot read as Parquet: {e}", source=self.name) from e


def _visible(rel: str) -> bool:
    # Spark's _SUCCESS and _committed files, .crc and other hidden files are not data
    return not any(part.startswith((".", "_")) for part in rel.split("/"))


def parquet_files(path: str | Path) -> List[ParquetFile]:
    """A Parquet file, or every Parquet file under a directory (sorted, hidden ones skipped)."""
    pa, _, _ = _pyarrow()
    import pyarrow.fs as pafs

    if is_uri(path):
        uri = str(path).rstrip("/")
        try:
            fs, root = pafs.FileSystem.from_uri(uri)
            info = fs.get_file_info(root)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot open: {e}", source=uri) from e
        prefix = uri[:len(uri) - len(root.lstrip("/"))] if uri.endswith(root.lstrip("/")) else None
        name = (lambda p: prefix + p.lstrip("/")) if prefix is not None else (lambda p: p)
    else:
        fs, root = pafs.LocalFileSystem(), str(Path(path).absolute())
        info = fs.get_file_info(root)
        name = (lambda p: str(Path(path) / Path(p).relative_to(root)) if p != root else str(path))
    if info.type == pafs.FileType.NotFound:
        raise DataError("file not found", source=str(path))
    if info.type == pafs.FileType.File:
        return [ParquetFile(fs, root, str(path))]
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    base = root.rstrip("/") + "/"
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(SUFFIXES)
                   and _visible(i.path[len(base):] if i.path.startswith(base) else i.base_name))
    if not files:
        raise DataError("no Parquet files (*.parquet, *.pq) in this directory", source=str(path))
    return [ParquetFile(fs, f, name(f)) for f in files]


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow is an install requirement
        raise DataError("reading Parquet needs pyarrow: pip install pyarrow") from None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    return pa, pc, pq


def read_frame(path: str | Path) -> pd.DataFrame:
    """A Parquet file or directory as one DataFrame (feature tables: sized by the vocabularies)."""
    frames = [f.read().to_pandas() for f in parquet_files(path)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _first(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _ids(col, f: ParquetFile, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A column of ids -> (codes int32, sorted distinct ids), normalised by
    ``rankers.data.ids`` (on the distinct values); missing or blank ids are errors."""
    from rankers.data.ids import clean_distinct

    pa, pc, _ = _pyarrow()
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_string(col.type)
            or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type)):
        raise DataError(f"ids must be text or integers, got a column of type {col.type}", source=str(f), column=name)
    enc = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col, null_encoding="encode")
    indices = enc.indices.to_numpy(zero_copy_only=False)
    dictionary = enc.dictionary.to_numpy(zero_copy_only=False)
    null_rows = enc.indices.is_null().to_numpy(zero_copy_only=False)
    if null_rows.any():
        raise DataError("empty id (a missing cell)", source=str(f), column=name, row=_first(null_rows))
    clean = clean_distinct(dictionary, str(f), name, lambda j: _first(indices == j))
    ids, inverse = np.unique(clean.astype(str), return_inverse=True)  # ' u1 ' and 'u1' are one id
    return inverse.astype(CODE)[indices], ids.astype(object)


def _numbers(col, f: ParquetFile, name: str, what: str, limit: float) -> np.ndarray:
    pa, pc, _ = _pyarrow()
    try:
        v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        text = pc.cast(col, pa.string()).to_numpy(zero_copy_only=False)
        v = pd.to_numeric(pd.Series(text), errors="coerce").to_numpy(np.float64)
    v = np.where(pd.isna(v), np.nan, v).astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (np.abs(v) > limit)
    if bad.any():
        r = _first(bad)
        raise DataError(f"{what} must be a finite number within +-{limit:g}, got {col[r].as_py()!r}",
                        source=str(f), column=name, row=r)
    return v


def read_log(path: str | Path, grades: Mapping[str, float] | None,
             rating_scale: tuple[float, float] | None = None) -> EventLog:
    """A log in Parquet (a file or a directory) -> EventLog, not yet de-duplicated.

    Columns: user_id, item_id, and ``rating`` (its own grade; ``rating_scale`` bounds it) or
    ``event`` (graded by ``grades``), optional ``timestamp`` (absent: row order across the
    files) and ``weight`` (absent: 1). Checked file by file, with the checks of
    ``rankers.data.log.validate_log``.
    """
    from rankers.data.log import FLOAT32_MAX

    pa, pc, pq = _pyarrow()
    logs, offset = [], 0
    for f in parquet_files(path):
        table = f.read()
        cols = table.column_names
        missing = [c for c in ("user_id", "item_id") if c not in cols]
        if "rating" in cols and "event" in cols:
            raise DataError("has both 'rating' and 'event' columns; keep one", source=str(f))
        if "rating" not in cols and "event" not in cols:
            missing.append("rating or event")
        if missing:
            raise DataError(f"missing column(s) {missing}; found {cols}", source=str(f))
        n = table.num_rows
        user, user_ids = _ids(table["user_id"], f, "user_id")
        item, item_ids = _ids(table["item_id"], f, "item_id")
        if "rating" in cols:
            g = _numbers(table["rating"], f, "rating", "a rating", FLOAT32_MAX)
            if rating_scale is not None:
                lo, hi = rating_scale
                bad = (g < lo) | (g > hi)
                if bad.any():
                    r = _first(bad)
                    raise DataError(f"rating {g[r]:g} outside the scale [{lo:g}, {hi:g}]", source=str(f),
                                    column="rating", row=r)
        else:
            if grades is None:
                raise DataError("has an 'event' column but no grades were given", source=str(f))
            names = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(table["event"].combine_chunks(), pa.string())))
            enc = pc.dictionary_encode(names)
            lookup = {k.lower(): float(v) for k, v in grades.items()}
            per = np.array([lookup.get(s, np.nan) if s is not None else np.nan for s in enc.dictionary.to_pylist()])
            idx = enc.indices.to_numpy(zero_copy_only=False)
            g = per[np.where(pd.isna(idx), 0, idx).astype(np.int64)] if len(per) else np.zeros(n)
            bad = np.isnan(g) | pd.isna(idx)
            if bad.any():
                r = _first(bad)
                raise DataError(f"unknown event {table['event'][r].as_py()!r}; known events {sorted(grades)}",
                                source=str(f), column="event", row=r)
        ts = _numbers(table["timestamp"], f, "timestamp", "a timestamp", 1e300) if "timestamp" in cols \
            else np.arange(offset, offset + n, dtype=np.float64)
        w = _numbers(table["weight"], f, "weight", "a weight", FLOAT32_MAX) if "weight" in cols \
            else np.ones(n)
        if (w < 0).any():
            r = _first(w < 0)
            raise DataError(f"a weight must be >= 0, got {w[r]!r}", source=str(f), column="weight", row=r)
        logs.append(EventLog(user, item, g.astype(np.float32), ts, w.astype(np.float32), user_ids, item_ids))
        offset += n
    return EventLog.concat(logs)
