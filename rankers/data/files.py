"""Any user's files (``data=files``): train/test logs and optional feature tables, CSV or
Parquet: a file, a directory of Parquet files, or the URI of either on an object store
(``s3://...``; ``rankers.data.parquet``).

Logs need ``user_id``, ``item_id`` and ``rating`` (numeric grade) or ``event`` (named,
graded by ``grades``); ``timestamp`` and ``weight`` are optional. Feature tables are keyed
by ``item_id`` / ``user_id``; ``item_features`` / ``user_features`` name the columns to use,
as names (a column holding ``|`` is multi-valued, otherwise categorical) or as
``{name, kind: categorical|multi|numeric, buckets}``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import pandas as pd

from rankers.data.errors import DataError
from rankers.data.features import FeatureSpec, is_list_column, validate_table
from rankers.data.eventlog import EventLog
from rankers.data.log import DEFAULT_GRADES, read_table, validate_log
from rankers.data.parquet import is_parquet, is_uri, read_log
from rankers.data.source import RawData


def _location(path: Optional[str]) -> Optional[str | Path]:
    """A local path, or a URI kept as a string (Path would fold its '//')."""
    return None if not path else str(path) if is_uri(path) else Path(path)


def _log(path: str | Path, grades: Optional[Mapping[str, float]], rating_scale) -> EventLog:
    if is_parquet(path):
        return read_log(path, dict(grades or DEFAULT_GRADES), rating_scale).deduplicate()
    return EventLog.from_frame(_csv_log(path, grades, rating_scale)).deduplicate()


def _csv_log(path: Path, grades: Optional[Mapping[str, float]], rating_scale) -> pd.DataFrame:
    df = read_table(path)
    if "rating" in df.columns and "event" in df.columns:
        raise DataError("has both 'rating' and 'event' columns; keep one", source=str(path))
    if "rating" in df.columns:
        return validate_log(df.rename(columns={"rating": "event"}), str(path), None, rating_scale)
    if "event" not in df.columns:
        raise DataError(f"needs a 'rating' or an 'event' column; found {list(df.columns)}", source=str(path))
    return validate_log(df, str(path), dict(grades or DEFAULT_GRADES))


def _specs(table: pd.DataFrame, columns: Sequence, source: str) -> List[FeatureSpec]:
    specs = []
    for c in columns or []:
        if isinstance(c, str):
            if c not in table.columns:
                raise DataError(f"feature column {c!r} not found; columns are {list(table.columns)}", source=source)
            multi = is_list_column(table[c]) or table[c].astype(str).str.contains("|", regex=False).any()
            specs.append(FeatureSpec(c, "multi" if multi else "categorical"))
        else:
            specs.append(FeatureSpec(**dict(c)))
    return specs


class FileSource:
    """Args: train, test: logs (a file, or a directory of Parquet files); test None: the pipeline
    splits train by ``data.split``; items / users: feature tables; item_features / user_features:
    columns to use; grades: event name -> grade (default view 1, cart 2, purchase 3);
    rating_scale: [lo, hi] allowed ratings (outside is an error)."""

    def __init__(self, train: str, test: Optional[str], items: Optional[str] = None, users: Optional[str] = None,
                 item_features: Sequence = (), user_features: Sequence = (),
                 grades: Optional[Mapping[str, float]] = None, rating_scale: Optional[Sequence[float]] = None):
        self.train, self.test = _location(train), _location(test)
        self.items, self.users = _location(items), _location(users)
        self.item_features, self.user_features = list(item_features or []), list(user_features or [])
        self.grades = dict(grades) if grades else None
        self.rating_scale = tuple(rating_scale) if rating_scale else None

    def _table(self, path: Optional[str | Path], key: str, columns) -> tuple[Optional[pd.DataFrame], List[FeatureSpec]]:
        if path is None:
            if columns:
                raise DataError(f"{key.split('_')[0]} features {list(columns)} given without a table "
                                f"(set data.{key.split('_')[0]}s)")
            return None, []
        raw = read_table(path)
        specs = _specs(raw, columns, str(path))
        return validate_table(raw, key, specs, str(path)), specs

    def _name(self) -> str:
        t = self.train
        return t if isinstance(t, str) else str(t.parent if t.is_file() else t)

    def load(self) -> RawData:
        train = _log(self.train, self.grades, self.rating_scale)
        test = _log(self.test, self.grades, self.rating_scale) if self.test is not None else None
        items, ispecs = self._table(self.items, "item_id", self.item_features)
        users, uspecs = self._table(self.users, "user_id", self.user_features)
        max_grade = float(max(g.grade.max() for g in (train, test) if g is not None and len(g)))
        return RawData(log=train, test_log=test, name=self._name(),
                       items=items, users=users, item_specs=ispecs, user_specs=uspecs, max_grade=max_grade)

