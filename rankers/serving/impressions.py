"""The impression log: what ``/recommend`` returned, one JSON line per response, beside the
event log (``/events`` takes the response's ``request_id``, which joins a click or a
purchase to what was shown).

A line: ``{"request_id", "timestamp", "user_id", "variant", "model_version", "items",
"scores"}``; an item's position is its index in ``items`` (0 = top). A request encodes its
line and puts it on a bounded queue (no I/O, no waiting: a full queue drops it and counts it);
a writer thread appends what the queue holds as one ``write`` of complete lines to a file
opened in append mode, and rotates it when it passes ``max_bytes`` (renamed to
``<stem>.<UTC time>-<n><suffix>``, then a new file), so a reader never sees half a line and
no line is lost across rotations. ``close()`` writes what is queued.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Union

log = logging.getLogger(__name__)

_STOP = object()


class ImpressionLog:
    """Append-only JSON-lines log at ``path`` (parent directories created).

    Args:
        path: the live file. max_bytes: rotate once the file is at least this large.
        queue_size: records waiting for the writer at most; beyond, records are dropped
            (``dropped`` counts them) rather than delaying a response.
    """

    def __init__(self, path: Union[str, Path], max_bytes: int = 64 << 20, queue_size: int = 100_000):
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"impressions_path {self.path} is a directory; give a file (it is created if absent)")
        if max_bytes < 1 or queue_size < 1:
            raise ValueError(f"max_bytes and queue_size must be >= 1, got {max_bytes}, {queue_size}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._queue: "queue.Queue" = queue.Queue(maxsize=int(queue_size))
        self.written = 0  # lines written (the writer thread's count)
        self.dropped = 0  # records the full queue turned away
        self.rotations = 0
        self._thread = threading.Thread(target=self._run, name="rankers-impressions", daemon=True)
        self._thread.start()

    def log(self, request_id: str, user_id: Optional[str], variant: str, model_version: str,
            items: Sequence[str], scores: Sequence[float], timestamp: Optional[float] = None) -> bool:
        """Queue one response's impression; False (and counted in ``dropped``) when the queue is
        full. Called from the service's event loop thread."""
        # encoded here, a few tens of microseconds: a writer thread encoding a backlog would hold
        # the GIL for whole switch intervals (5 ms) while requests wait for it
        line = json.dumps({"request_id": request_id, "timestamp": time.time() if timestamp is None else timestamp,
                           "user_id": user_id, "variant": variant, "model_version": model_version,
                           "items": list(items), "scores": [float(s) for s in scores]}, separators=(",", ":"))
        try:
            self._queue.put_nowait(line)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _run(self) -> None:
        while True:
            batch: List[object] = [self._queue.get()]
            while len(batch) < 10_000:  # what else is waiting, up to one write's worth
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is _STOP for r in batch)
            lines = [r for r in batch if r is not _STOP]
            if lines:
                try:
                    self._append(("\n".join(lines) + "\n").encode("utf-8"))
                    self.written += len(lines)
                except OSError as e:  # disk full, path gone: log it, keep serving
                    log.error("impression log %s: %s; %d impressions lost", self.path, e, len(lines))
            if stop:
                return

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size >= self.max_bytes:
            self.rotations += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            n = self.rotations
            while (to := self.path.with_name(f"{self.path.stem}.{stamp}-{n}{self.path.suffix}")).exists():
                n += 1  # a restarted service rotating within the same second: never overwrite
            os.replace(self.path, to)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    def files(self) -> List[Path]:
        """The live file and its rotated predecessors, oldest first."""
        return log_files(self.path)


def log_files(path: Union[str, Path]) -> List[Path]:
    """An impression log's files: its rotated predecessors (``<stem>.<time>-<n><suffix>``), oldest
    first, then the live file."""
    path = Path(path)
    rotated = sorted(path.parent.glob(f"{path.stem}.*{path.suffix}"), key=lambda p: p.stat().st_mtime_ns)
    return [p for p in rotated if p != path] + ([path] if path.exists() else [])
