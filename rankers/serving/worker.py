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
import collections
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Deque, Dict, List, Optional, Sequence, Tuple, Union

from rankers.serving.model import ModelInfo, ModelLoadError, RequestError

log = logging.getLogger(__name__)


class WorkerGone(Exception):
    """The worker process is closed or died; retry on the slot's current model."""


class ModelCallError(Exception):
    """The model failed inside the worker (its own fault, not the request's); the message is the model's."""


LOAD_NICE = 10  # niceness of the loading thread: the serving processes get ~90% of a contended core


def _lower_this_thread() -> None:
    """Lower the calling thread (Linux sets niceness per thread; threads it starts inherit it)
    to ``LOAD_NICE``. Not SCHED_IDLE: on a saturated machine that starves a load for minutes."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICE)
        except OSError:
            pass


def _load_at_low_priority(path: str, jit_optimize: bool):
    """load_model(path) in a thread of lower priority, so a swap takes CPU from idle time rather
    than from the requests being served. Returns the model or the exception it raised."""
    import torch

    from rankers.serving.model import load_model

    out = {}

    def run():
        _lower_this_thread()
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
            except RequestError as e:  # LoadedModel classifies what the model raised
                conn.send(("request_error", str(e)))
            except Exception as e:
                conn.send(("error", f"{type(e).__name__}: {e}"))


class WorkerModel(ModelInfo):
    """Handle of a model in a worker process: ModelInfo plus ``recommend``/``score`` over a pipe."""

    def __init__(self, info: ModelInfo, process, conn):
        super().__init__(**{f: getattr(info, f) for f in info.__dataclass_fields__})
        self._process = process
        self._conn = conn
        self._lock = threading.Lock()  # one writer on the pipe at a time
        # Pipelined calls from the event loop: answers come back in the order the calls were
        # written, one future each. Touched only by the loop's thread (close() just waits).
        self._pending: Deque[asyncio.Future] = collections.deque()
        self._reader_loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False

    def _call(self, op: str, *args):
        with self._lock:
            if self._pending:
                raise RuntimeError("a blocking call while asynchronous calls are in flight on the same pipe")
            if self._closed:
                raise WorkerGone(f"model {self.version} is closed")
            try:
                self._conn.send((op, args))
                status, payload = self._conn.recv()
            except (EOFError, OSError) as e:
                self._closed = True
                raise WorkerGone(f"the process of model {self.version} is gone: {e!r}") from e
        return _answer(status, payload)

    async def _acall(self, op: str, *args):
        """``_call`` for the event loop, pipelined: the call is written to the pipe at once and
        its answer awaited, so the loop serves other requests meanwhile, and the worker, which
        answers in order, goes from one queued call to the next without waiting for the loop
        (a busy loop would otherwise leave it idle between calls and a queue would build)."""
        if sys.platform == "win32":  # the proactor loop cannot watch a pipe: block a thread instead
            return await asyncio.to_thread(self._call, op, *args)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:  # another thread holds it only for close() or a blocking call, both short
            if self._closed:
                raise WorkerGone(f"model {self.version} is closed")
            try:
                self._conn.send((op, args))
            except OSError as e:
                self._closed = True
                raise WorkerGone(f"the process of model {self.version} is gone: {e!r}") from e
            self._pending.append(fut)
            if self._reader_loop is None:
                loop.add_reader(self._conn.fileno(), self._on_readable)
                self._reader_loop = loop
        # A cancelled caller leaves its future cancelled; its answer is read and dropped in turn.
        status, payload = await fut
        return _answer(status, payload)

    def _on_readable(self) -> None:
        """Hand each answer that has arrived to the oldest waiting call (in the loop's thread)."""
        try:
            while self._pending and self._conn.poll():
                answer = self._conn.recv()
                fut = self._pending.popleft()
                if not fut.done():
                    fut.set_result(answer)
        except (EOFError, OSError) as e:
            self._closed = True
            gone = WorkerGone(f"the process of model {self.version} is gone: {e!r}")
            while self._pending:
                fut = self._pending.popleft()
                if not fut.done():
                    fut.set_exception(gone)
        if not self._pending and self._reader_loop is not None:
            self._reader_loop.remove_reader(self._conn.fileno())
            self._reader_loop = None

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
        """Stop the worker after the calls in flight, if any (their answers are handed out first)."""
        deadline = time.monotonic() + timeout_s
        while self._reader_loop is not None and time.monotonic() < deadline:
            time.sleep(0.005)
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


def _answer(status: str, payload):
    """A worker's answer -> its payload, or the exception it stands for."""
    if status == "request_error":
        raise RequestError(payload)
    if status == "error":
        raise ModelCallError(payload)
    return payload


def _context():
    """The fork server, preloaded with torch (via this module) and the main script's imports;
    never plain fork: the service runs threads."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # no effect once the fork server runs; _forkserver_init last: it freezes what the others import
    ctx.set_forkserver_preload(["__main__", __name__, "rankers.serving._forkserver_init"])
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
