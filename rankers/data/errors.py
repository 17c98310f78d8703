"""The one exception type for bad input data: it names where the problem is."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message names the source (file or table), column and row."""

    def __init__(self, message: str, source: str | None = None, column: str | None = None,
                 row: int | None = None):
        where = []
        if source is not None:
            where.append(str(source))
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        self.source, self.column, self.row = source, column, row
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")
