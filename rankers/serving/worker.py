"""Models in worker processes, so that loading a new export never stalls the service.

``torch.jit.load`` holds the GIL for the whole load (100-200 ms for a 100k-item model on
this 2-core machine), and in the serving process no request can run meanwhile: at 200
requests/s a swap would queue 20-40 of them. ``start_worker`` instead loads and validates
the export (``load_model``) in a fresh process and returns a ``WorkerModel`` handle that the
service uses like a ``LoadedModel``: each call is one round trip over a pipe (about 0.1 ms),
answered by the worker, which runs one call at a time.

Workers are forked from multiprocessing's fork server, which has torch and this module
imported already: a new worker is ready in about 0.15 s for a 100k-item model, where a
freshly spawned interpreter spends 1.5-2 s of CPU importing torch while the service runs.
(Where there is no fork server, as on Windows, workers are spawned.) The worker ignores
SIGINT (the service stops it) and exits when its pipe closes, so it never outlives the service.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from rankers.serving.model import ModelInfo, ModelLoadError

log = logging.getLogger(__name__)


class WorkerGone(Exception):
    """The worker process is closed or died; retry on the slot's current model."""


class ModelCallError(Exception):
    """The model raised inside the worker; the message is the model's."""


LOAD_NICE = 10  # niceness of the loading thread: the serving processes get ~90% of a contended core


def _load_at_low_priority(path: str, jit_optimize: bool):
    """load_model(path) in a thread of lower priority, so a swap takes CPU from idle time rather
    than from the requests being served (Linux sets niceness per thread). Returns the model or
    the exception it raised."""
    import torch

    from rankers.serving.model import load_model

    out = {}

    def run():
        if sys.platform.startswith("linux"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICE)
            except OSError:
                pass
        with torch.jit.optimized_execution(jit_optimize):  # the flag is per thread: probes run here
            try:
                out["model"] = load_model(path)
            except Exception as e:
                out["error"] = e

    t = threading.Thread(target=run, name="rankers-model-load")
    t.start()
    t.join()
    return out.get("model", out.get("error"))


def _worker_main(conn, path: str, num_threads: int, jit_optimize: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the service stops us
    import torch

    if num_threads:
        torch.set_num_threads(int(num_threads))
    if torch.get_num_threads() > 1:
        torch.ones(1 << 20).sum()  # start the intra-op pool here: threads inherit their creator's niceness
    model = _load_at_low_priority(path, jit_optimize)
    if isinstance(model, Exception):
        reason = str(model) if isinstance(model, ModelLoadError) else \
            f"{path}: unexpected error while loading: {type(model).__name__}: {model}"
        conn.send(("failed", reason))  # the service logs it and keeps serving
        return
    conn.send(("ready", model.info()))
    with torch.jit.optimized_execution(jit_optimize):
        calls = {"recommend": model.recommend, "score": model.score}
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):
                return
            if op == "stop":
                return
            try:
                conn.send(("ok", calls[op](*args)))
            except Exception as e:
                conn.send(("error", str(e)))


class WorkerModel(ModelInfo):
    """Handle of a model in a worker process: ModelInfo plus ``recommend``/``score`` over a pipe."""

    def __init__(self, info: ModelInfo, process, conn):
        super().__init__(**{f: getattr(info, f) for f in info.__dataclass_fields__})
        self._process = process
        self._conn = conn
        self._lock = threading.Lock()  # one call in flight per pipe
        self._alock: Optional[asyncio.Lock] = None  # orders the event loop's calls before they take _lock
        self._alock_loop = None
        self._closed = False

    def _call(self, op: str, *args):
        with self._lock:
            if self._closed:
                raise WorkerGone(f"model {self.version} is closed")
            try:
                self._conn.send((op, args))
                status, payload = self._conn.recv()
            except (EOFError, OSError) as e:
                self._closed = True
                raise WorkerGone(f"the process of model {self.version} is gone: {e!r}") from e
        if status == "error":
            raise ModelCallError(payload)
        return payload

    async def _acall(self, op: str, *args):
        """``_call`` for the event loop: while the worker computes, the loop serves other
        requests instead of blocking on the pipe (a blocked loop makes the whole service
        one request at a time, so HTTP parsing and the model never overlap)."""
        loop = asyncio.get_running_loop()
        if self._alock is None or self._alock_loop is not loop:
            self._alock, self._alock_loop = asyncio.Lock(), loop
        async with self._alock:
            # Only one coroutine gets here at a time, so taking the thread lock cannot deadlock
            # the loop; another thread holds it only for close(), which is short.
            with self._lock:
                if self._closed:
                    raise WorkerGone(f"model {self.version} is closed")
                try:
                    self._conn.send((op, args))
                    try:
                        await _readable(loop, self._conn)
                    except asyncio.CancelledError:
                        self._drain()
                        raise
                    status, payload = self._conn.recv()
                except (EOFError, OSError) as e:
                    self._closed = True
                    raise WorkerGone(f"the process of model {self.version} is gone: {e!r}") from e
        if status == "error":
            raise ModelCallError(payload)
        return payload

    def _drain(self) -> None:
        """Read and drop the answer of a call whose caller was cancelled (the worker answers
        in milliseconds): left in the pipe, it would be taken as the next call's answer."""
        try:
            self._conn.recv()
        except (EOFError, OSError):
            self._closed = True

    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: Sequence[str]) -> Tuple[List[str], List[float]]:
        return self._call("recommend", user_id, features, k, list(exclude))

    def score(self, user_id: str, features: Dict[str, List[str]], items: Sequence[str]) -> List[float]:
        return self._call("score", user_id, features, list(items))

    async def recommend_async(self, user_id: str, features: Dict[str, List[str]], k: int,
                              exclude: Sequence[str]) -> Tuple[List[str], List[float]]:
        return await self._acall("recommend", user_id, features, k, list(exclude))

    async def score_async(self, user_id: str, features: Dict[str, List[str]], items: Sequence[str]) -> List[float]:
        return await self._acall("score", user_id, features, list(items))

    def alive(self) -> bool:
        return not self._closed and self._process.is_alive()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker after the call in flight, if any (waits for the pipe's lock)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._conn.send(("stop", ()))
                except OSError:
                    pass
            self._conn.close()
        self._process.join(timeout_s)
        if self._process.is_alive():
            log.warning("model process %s did not stop; killing it", self._process.pid)
            self._process.kill()
            self._process.join(timeout_s)


async def _readable(loop: asyncio.AbstractEventLoop, conn) -> None:
    """Wait until ``conn`` has data (or EOF) without blocking the loop."""
    try:
        fd = conn.fileno()
        fut = loop.create_future()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    except NotImplementedError:  # loops without add_reader (Windows' proactor): wait in a thread
        await asyncio.to_thread(conn.poll, None)
        return
    try:
        await fut
    finally:
        loop.remove_reader(fd)


def _context():
    """The fork server, preloaded with torch (via this module) and the main script's imports;
    never plain fork: the service runs threads."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])  # no effect once the fork server runs
    return ctx


def start_worker(path: Union[str, Path], num_threads: int = 1, jit_optimize: bool = False,
                 timeout_s: float = 300.0) -> WorkerModel:
    """Load and validate the export at ``path`` in a new process; ModelLoadError if it fails."""
    ctx = _context()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker_main, args=(child, str(path), num_threads, jit_optimize),
                       name="rankers-model", daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise ModelLoadError(f"{path}: the model process did not report within {timeout_s} s")
        status, payload = parent.recv()
    except EOFError:
        proc.join(5)
        raise ModelLoadError(f"{path}: the model process exited with {proc.exitcode} while loading") from None
    except BaseException:
        proc.kill()
        proc.join(5)
        parent.close()
        raise
    if status != "ready":
        proc.join(5)
        parent.close()
        raise ModelLoadError(payload)
    return WorkerModel(payload, proc, parent)
