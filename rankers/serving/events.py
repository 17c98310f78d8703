"""Feedback events appended to a CSV log that the training data reader accepts.

Columns: user_id, item_id, event, timestamp, variant, model_version, request_id (the
``/recommend`` response the event follows, joining it to the impression log). ``rankers.data``
(``read_table`` + ``validate_log``, the ``data=files`` source) reads user_id, item_id,
event (view | cart | purchase) and timestamp, and ignores the three extra columns, which
are kept for A/B analysis. A log with another header (an older layout) is moved aside at
start. Each event is one ``write`` of one complete line to a file opened in append mode, so a
reader never sees half a row; the header is written when the file is new or empty. The file is reopened per event, so it can be rotated (moved
away) while the service runs.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
from pathlib import Path
from typing import Optional, Union

from rankers.data.events import DEFAULT_GRADES, EVENT_LOG_COLUMNS

COLUMNS = EVENT_LOG_COLUMNS
EVENTS = tuple(DEFAULT_GRADES)
log = logging.getLogger(__name__)


class EventLog:
    """Append-only CSV event log at ``path`` (parent directories are created)."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"events_path {self.path} is a directory; give a file (it is created if absent)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                header = f.readline().decode("utf-8", "replace").rstrip("\r\n")
            if header != ",".join(COLUMNS):  # a log of another layout: set it aside, never mix rows
                aside = self.path.with_name(f"{self.path.stem}.{time.strftime('%Y%m%dT%H%M%S')}{self.path.suffix}")
                os.replace(self.path, aside)
                log.warning("event log %s had the columns %r; moved to %s, a new log starts", self.path, header, aside)

    def append(self, user_id: str, item_id: str, event: str, timestamp: float, variant: str,
               model_version: Optional[str] = None, request_id: Optional[str] = None) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known events {list(EVENTS)}")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [user_id, item_id, event, repr(float(timestamp)), variant, model_version or "", request_id or ""])
        line = buf.getvalue().encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size == 0:
                    line = (",".join(COLUMNS) + "\n").encode("utf-8") + line
                os.write(fd, line)
            finally:
                os.close(fd)
