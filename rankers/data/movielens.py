"""MovieLens readers (``data=movielens``): the 100k folder, the 1M ``.dat`` files and the
``ratings.csv`` / ``movies.csv`` format of the latest releases, detected from the folder.

The data is never part of this project (its licence forbids redistribution): pass its
folder as ``data.path``. Ratings are grades (1-5, halves in the latest releases); users
get age band, gender, occupation and zip prefix where present; items get genres
(multi-valued) and release decade.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import pandas as pd

from rankers.data.errors import DataError
from rankers.data.features import FeatureSpec, validate_table
from rankers.data.eventlog import EventLog
from rankers.data.log import validate_log
from rankers.data.source import RawData

SPLITS_100K = ("ua", "ub", "u1", "u2", "u3", "u4", "u5")
RATING_SCALE = (0.5, 5.0)
GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western"]


def _read_rows(path: Path, sep: str, n_fields: int, encoding: str = "latin-1", min_fields: Optional[int] = None,
               header: bool = False) -> List[List[str]]:
    """Split every line on ``sep``; a wrong field count is an error naming file and line."""
    if not path.is_file():
        raise DataError("file not found", source=str(path))
    rows = []
    with open(path, encoding=encoding, newline="") as f:
        for lineno, line in enumerate(f, start=1):
            if header and lineno == 1:
                continue
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split(sep) if sep != "csv" else _csv_split(line)
            ok = len(parts) == n_fields if min_fields is None else len(parts) >= min_fields
            if not ok:
                want = n_fields if min_fields is None else f"at least {min_fields}"
                raise DataError(f"line {lineno}: expected {want} fields separated by {sep!r}, found {len(parts)} "
                                "(wrong separator or truncated line?)", source=str(path))
            rows.append(parts)
    if not rows:
        raise DataError("the file has no data rows", source=str(path))
    return rows


def _csv_split(line: str) -> List[str]:
    import csv
    return next(csv.reader([line]))


def _ratings(path: Path, rows: List[List[str]], first_line: int = 1) -> pd.DataFrame:
    df = pd.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                       "event": [r[2] for r in rows], "timestamp": [r[3] for r in rows]})
    try:
        return validate_log(df, str(path), grades=None, rating_scale=RATING_SCALE)
    except DataError as e:
        if e.row is not None:  # name the file line, not the 0-based data row
            raise DataError(f"line {e.row + first_line}: {str(e).split(': ', 1)[1]}", source=str(path),
                            column={"event": "rating"}.get(e.column, e.column)) from None
        raise


def _age_band(age: int) -> str:
    return str(min(age // 10, 6))


def _users_100k(d: Path) -> pd.DataFrame:
    rows = _read_rows(d / "u.user", "|", 5)
    for i, r in enumerate(rows, start=1):
        if not r[1].isdigit():
            raise DataError(f"line {i}: age {r[1]!r} is not a number", source=str(d / "u.user"), column="age")
    return pd.DataFrame({"user_id": [r[0] for r in rows], "age_band": [_age_band(int(r[1])) for r in rows],
                         "gender": [r[2] for r in rows], "occupation": [r[3] for r in rows],
                         "zip_prefix": [r[4][:1] for r in rows]})


def _decade(date: str) -> str:
    m = re.search(r"(\d{4})", date)
    return f"{m.group(1)[:3]}0s" if m else ""


def _items_100k(d: Path) -> pd.DataFrame:
    rows = _read_rows(d / "u.item", "|", 24)
    genres = []
    for i, r in enumerate(rows, start=1):
        flags = r[5:24]
        if any(f not in ("0", "1") for f in flags):
            raise DataError(f"line {i}: genre flags must be 0/1", source=str(d / "u.item"), column="genres")
        genres.append("|".join(g for g, f in zip(GENRES_100K, flags) if f == "1"))
    return pd.DataFrame({"item_id": [r[0] for r in rows], "genres": genres,
                         "decade": [_decade(r[2]) for r in rows]})


def _title_decade(title: str) -> str:
    m = re.search(r"\((\d{4})\)\s*$", title.strip())
    return f"{m.group(1)[:3]}0s" if m else ""


USER_SPECS = [FeatureSpec("age_band"), FeatureSpec("gender"), FeatureSpec("occupation"), FeatureSpec("zip_prefix")]
ITEM_SPECS = [FeatureSpec("genres", "multi"), FeatureSpec("decade")]


class MovieLensSource:
    """``load()`` reads a MovieLens folder.

    Args:
        path: the folder (ml-100k with u.data, ml-1m with ratings.dat, or latest with ratings.csv).
        split: 100k only: one of ua, ub, u1..u5 (official train/test files), or null to split
            ``u.data`` with the pipeline's ``data.split``.
        use_user_features / use_item_features: attach the feature tables.
    """

    def __init__(self, path: str, split: Optional[str], use_user_features: bool, use_item_features: bool):
        self.path, self.split = Path(path), split
        self.use_user_features, self.use_item_features = use_user_features, use_item_features

    def load(self) -> RawData:
        d = self.path
        if not d.is_dir():
            raise DataError("MovieLens folder not found (set data.path to the folder holding u.data, "
                            "ratings.dat or ratings.csv)", source=str(d))
        if (d / "u.data").is_file():
            return self._load_100k(d)
        if (d / "ratings.dat").is_file():
            return self._load_1m(d)
        if (d / "ratings.csv").is_file():
            return self._load_latest(d)
        raise DataError("no u.data, ratings.dat or ratings.csv in this folder", source=str(d))

    def _finish(self, name, log, test, users, items) -> RawData:
        uspecs = USER_SPECS if (self.use_user_features and users is not None) else []
        ispecs = [s for s in ITEM_SPECS if items is not None and s.name in items.columns] \
            if self.use_item_features else []
        return RawData(
            log=EventLog.from_frame(log).deduplicate(),
            test_log=EventLog.from_frame(test).deduplicate() if test is not None else None, name=name,
            users=validate_table(users, "user_id", uspecs, f"{name} users") if uspecs else None,
            items=validate_table(items, "item_id", ispecs, f"{name} items") if ispecs else None,
            user_specs=list(uspecs), item_specs=list(ispecs), max_grade=RATING_SCALE[1])

    def _load_100k(self, d: Path) -> RawData:
        if self.split is not None and self.split not in SPLITS_100K:
            raise DataError(f"data.split must be one of {list(SPLITS_100K)} or null, got {self.split!r}",
                            source=str(d))
        if self.split:
            base, test_f = d / f"{self.split}.base", d / f"{self.split}.test"
            log = _ratings(base, _read_rows(base, "\t", 4))
            test = _ratings(test_f, _read_rows(test_f, "\t", 4))
        else:
            log, test = _ratings(d / "u.data", _read_rows(d / "u.data", "\t", 4)), None
        users = _users_100k(d) if (d / "u.user").is_file() else None
        items = _items_100k(d) if (d / "u.item").is_file() else None
        return self._finish(f"ml-100k/{self.split or 'u.data'}", log, test, users, items)

    def _load_1m(self, d: Path) -> RawData:
        log = _ratings(d / "ratings.dat", _read_rows(d / "ratings.dat", "::", 4))
        users = items = None
        if (d / "users.dat").is_file():
            rows = _read_rows(d / "users.dat", "::", 5)
            users = pd.DataFrame({"user_id": [r[0] for r in rows],
                                  "age_band": [_age_band(int(r[2])) if r[2].isdigit() else "" for r in rows],
                                  "gender": [r[1] for r in rows], "occupation": [r[3] for r in rows],
                                  "zip_prefix": [r[4][:1] for r in rows]})
        if (d / "movies.dat").is_file():
            rows = _read_rows(d / "movies.dat", "::", 3)
            items = pd.DataFrame({"item_id": [r[0] for r in rows], "genres": [r[2] for r in rows],
                                  "decade": [_title_decade(r[1]) for r in rows]})
        return self._finish("ml-1m", log, None, users, items)

    def _load_latest(self, d: Path) -> RawData:
        rows = _read_rows(d / "ratings.csv", ",", 4, encoding="utf-8", header=True)
        log = _ratings(d / "ratings.csv", rows, first_line=2)
        items = None
        if (d / "movies.csv").is_file():
            rows = _read_rows(d / "movies.csv", "csv", 3, encoding="utf-8", header=True)
            items = pd.DataFrame({"item_id": [r[0] for r in rows],
                                  "genres": [r[2].replace("(no genres listed)", "") for r in rows],
                                  "decade": [_title_decade(r[1]) for r in rows]})
        return self._finish("movielens", log, None, None, items)

