"""Per-row lists of different lengths (per-user histories, targets, exclusions) as CSR: never
padded to the longest row for every user, never a Python list per user. NumPy only, so the
export schema and the serving side can hold one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np


def unique(a: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``a``, by one sort. (``np.unique`` from NumPy 2.3 on takes a
    hash-based path that is ~100x slower on millions of integers: 7.6 s against 0.06 s for
    7.5M int64 keys here.)"""
    s = np.sort(np.asarray(a))
    if len(s) == 0:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


@dataclass
class Ragged:
    """Per-row lists as CSR: row r is values[offsets[r]:offsets[r + 1]]. offsets int64 [R + 1]."""

    offsets: np.ndarray
    values: np.ndarray

    @classmethod
    def group(cls, rows: np.ndarray, values: np.ndarray, n_rows: int) -> "Ragged":
        """Values grouped by row (``rows`` [n] in [0, n_rows)); within a row, in input order."""
        order = np.argsort(rows, kind="stable")
        offsets = np.zeros(n_rows + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
        return cls(offsets, values[order])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self, rows=slice(None)) -> np.ndarray:
        return (self.offsets[1:] - self.offsets[:-1])[rows]

    def row(self, r: int) -> np.ndarray:
        return self.values[self.offsets[r]:self.offsets[r + 1]]

    def take(self, rows: np.ndarray) -> "Ragged":
        """The rows ``rows`` [B] as a new Ragged (in that order)."""
        lens = self.lengths(rows)
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        starts = np.repeat(self.offsets[rows] - offsets[:-1], lens)
        return Ragged(offsets, self.values[starts + np.arange(offsets[-1])])

    def lists(self, rows) -> List[np.ndarray]:
        """Rows as a list of arrays (for an API that takes per-query lists)."""
        sub = self.take(np.arange(len(self))[rows])
        return np.split(sub.values, sub.offsets[1:-1])

    def padded(self, rows: np.ndarray, fill=0) -> np.ndarray:
        """Rows ``rows`` [B] as a padded [B, max(1, longest)] array."""
        sub = self.take(rows)
        lens = sub.lengths()
        out = np.full((len(rows), max(1, int(lens.max()) if len(lens) else 1)), fill, sub.values.dtype)
        r = np.repeat(np.arange(len(rows)), lens)
        out[r, np.arange(len(sub.values)) - np.repeat(sub.offsets[:-1], lens)] = sub.values
        return out
