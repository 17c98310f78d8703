"""Ids as the model stores them, the one rule for every reader (CSV, Parquet, feature tables).

An id is text without surrounding blanks (``' u1 '`` is ``u1``); a whole number in a numeric
column is written in decimal without a fraction, so ``1.0`` in a float column of one file and
``1`` in an int column of another are the same id. A missing cell, a blank one, or a
missing-value marker written as text (``NaN``, ``None``, ``NULL``, ``NA``, ``N/A``, ...)
is not an id: a DataError naming file, column and row. The service and model.ts look ids up
exactly as stored, so a client sends the normalised form (the HTTP API strips blanks too).

Normalising runs on the distinct values of a column (as many as the vocabulary), with
vectorised string operations.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from rankers.data.errors import DataError

# Text that stands for a missing value in the tools that write these files (pandas, R, SQL, Excel).
MISSING_MARKERS = frozenset({"nan", "-nan", "none", "null", "na", "n/a", "<na>", "#n/a", "nil"})


def clean_distinct(values, source: str, column: str, first_row) -> np.ndarray:
    """Distinct raw ids -> their normalised strings (object array, same order).

    Args:
        values: [U] distinct cells of one column: a numpy array of integers or floats (a
            numeric column), or of objects (text; None or NaN for missing cells).
        source, column: for errors. first_row: ``first_row(j)`` the data row where values[j] first occurs.
    """
    arr = np.asarray(values)
    missing = pd.isna(arr)
    if missing.any():
        j = int(np.flatnonzero(missing)[0])
        raise DataError("empty id (a missing cell)", source=source, column=column, row=first_row(j))
    if arr.dtype.kind in "iu":
        return arr.astype(str).astype(object)
    if arr.dtype.kind == "f":
        whole = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0 ** 53)
        if not whole.all():
            j = int(np.flatnonzero(~whole)[0])
            raise DataError(f"id {arr[j].item()!r} is a number but not a whole one: ids are text or integers",
                            source=source, column=column, row=first_row(j))
        return arr.astype(np.int64).astype(str).astype(object)  # 1.0 and 1 are the id "1"
    s = pd.Series(arr, dtype=object).astype(str).str.strip()
    bad = ((s.str.len() == 0) | s.str.lower().isin(MISSING_MARKERS)).to_numpy()
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        what = "empty id (blank)" if not s.iloc[j] else f"id {arr[j]!r} is a missing-value marker, not an id"
        raise DataError(what, source=source, column=column, row=first_row(j))
    return s.to_numpy(dtype=object)


def normalise_ids(values: pd.Series, source: str, column: str) -> np.ndarray:
    """A column of ids [n] -> normalised id strings [n] (object array); see the module doc."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    uniques = np.asarray(uniques)
    if uniques.dtype == object and values.dtype.kind in "iuf":
        uniques = uniques.astype(values.dtype)
    clean = clean_distinct(uniques, source, column, lambda j: int(np.flatnonzero(codes == j)[0]))
    return clean[codes]
