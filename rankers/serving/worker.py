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
import pickle
import queue
import select
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Deque, Dict, List, Optional, Sequence, Tuple, Union

from rankers.artifact.writer import owner_tag, remove_dead_owners
from rankers.serving.model import ModelInfo, ModelLoadError, RequestError, fingerprint

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


def _worker_main(requests, answers, path: str, num_threads: int, jit_optimize: bool) -> None:
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
        answers.send(("failed", reason))  # the service logs it and keeps serving
        return
    answers.send(("ready", model.info()))
    with torch.jit.optimized_execution(jit_optimize):
        calls = {"recommend": model.recommend, "score": model.score, "rerank": model.rerank}
        while True:
            try:
                op, args = requests.recv()
            except (EOFError, OSError):
                return
            if op == "stop":
                return
            try:
                answers.send(("ok", calls[op](*args)))
            except RequestError as e:  # LoadedModel classifies what the model raised
                answers.send(("request_error", str(e)))
            except Exception as e:
                answers.send(("error", f"{type(e).__name__}: {e}"))


class _Frames:
    """The answers of a worker, read from its pipe as multiprocessing.Connection frames (a
    4-byte big-endian length, or -1 and an 8-byte one, then a pickle) with the descriptor
    non-blocking: a large answer that has half arrived waits in the buffer for the rest.
    (Connection.recv on a non-blocking descriptor, which an event loop's reader makes of it,
    fails mid-message with EAGAIN: a busy pipe looked like a dead worker.)"""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self.buf = bytearray()
        self.eof = False

    def fill(self) -> None:
        """Take in what the pipe holds now."""
        while not self.eof:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                self.eof = True
            self.buf += chunk

    def next(self):
        """The next complete answer, or None until it has arrived."""
        b = self.buf
        if len(b) < 4:
            return None
        n, head = struct.unpack("!i", b[:4])[0], 4
        if n == -1:
            if len(b) < 12:
                return None
            n, head = struct.unpack("!Q", b[4:12])[0], 12
        if len(b) < head + n:
            return None
        answer = pickle.loads(memoryview(b)[head:head + n])
        del b[:head + n]
        return answer

    def wait(self, timeout_s: Optional[float] = None):
        """Block until the next answer (EOFError when the worker closed its end first)."""
        while True:
            answer = self.next()
            if answer is not None:
                return answer
            if self.eof:
                raise EOFError("the worker closed its pipe")
            if not select.select([self.fd], [], [], timeout_s)[0]:
                raise TimeoutError(f"no answer within {timeout_s} s")
            self.fill()


class WorkerModel(ModelInfo):
    """Handle of a model in a worker process: ModelInfo plus ``recommend``/``score`` over two
    pipes, one for requests and one for answers.

    Requests from the event loop are written by a writer thread, so the loop never blocks on
    a full pipe (a 5 MB request waits there for the worker, not the loop); answers are read as
    they arrive, frame by frame (``_Frames``). ``revive()`` starts a new worker on the same
    export from the service's own snapshot of its files (hard links made when it was first
    loaded), whatever the deployed path holds by then.
    """

    def __init__(self, info: ModelInfo, process, requests, answers, snapshot: "_Snapshot", spawn: dict):
        super().__init__(**{f: getattr(info, f) for f in info.__dataclass_fields__})
        self._process = process
        self._requests = requests  # blocking; written by the writer thread or a blocking call
        self._answers = answers
        self._frames = _Frames(answers.fileno())
        self._snapshot, self._spawn = snapshot, spawn
        self._lock = threading.Lock()  # one writer on the pipe at a time
        # Pipelined calls from the event loop: answers come back in the order the calls were
        # written, one future each. Touched only by the loop's thread (close() just waits).
        self._pending: Deque[asyncio.Future] = collections.deque()
        self._reader_loop: Optional[asyncio.AbstractEventLoop] = None
        self._outbox: Optional[queue.SimpleQueue] = None
        self._closed = False
        self._spare: Optional["WorkerModel"] = None  # a second process on the same export, loaded and idle
        self._spare_lock = threading.Lock()

    def _gone(self, e: BaseException) -> WorkerGone:
        self._closed = True
        return WorkerGone(f"the process of model {self.version} is gone: {e!r}")

    def _call(self, op: str, *args):
        with self._lock:
            if self._pending:
                raise RuntimeError("a blocking call while asynchronous calls are in flight on the same pipe")
            if self._closed:
                raise WorkerGone(f"model {self.version} is closed")
            try:
                self._requests.send((op, args))
                status, payload = self._frames.wait()
            except (EOFError, OSError) as e:
                raise self._gone(e) from e
        return _answer(status, payload)

    async def _acall(self, op: str, *args):
        """``_call`` for the event loop, pipelined: the call is queued for the writer thread at
        once and its answer awaited, so the loop serves other requests meanwhile, and the
        worker, which answers in order, goes from one queued call to the next without waiting
        for the loop (a busy loop would otherwise leave it idle between calls)."""
        if sys.platform == "win32":  # the proactor loop cannot watch a pipe: block a thread instead
            return await asyncio.to_thread(self._call, op, *args)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:  # another thread holds it only for close() or a blocking call, both short
            if self._closed:
                raise WorkerGone(f"model {self.version} is closed")
            if self._outbox is None:
                self._outbox = queue.SimpleQueue()
                threading.Thread(target=self._write, args=(self._outbox, loop), daemon=True,
                                 name=f"rankers-pipe-{self._process.pid}").start()
            self._pending.append(fut)
            self._outbox.put((op, args))
            if self._reader_loop is None:
                loop.add_reader(self._frames.fd, self._on_readable)
                self._reader_loop = loop
        # A cancelled caller leaves its future cancelled; its answer is read and dropped in turn.
        status, payload = await fut
        return _answer(status, payload)

    def _write(self, outbox: queue.SimpleQueue, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: requests to the worker, in the order they were queued."""
        while True:
            item = outbox.get()
            if item is None:
                return
            try:
                self._requests.send(item)
            except (OSError, ValueError) as e:  # the worker is gone (EPIPE) or we closed the pipe
                try:
                    loop.call_soon_threadsafe(self._fail_pending, e)
                except RuntimeError:  # the loop is closed: no call is waiting any more
                    pass
                return

    def _fail_pending(self, e: BaseException) -> None:
        gone = self._gone(e)
        while self._pending:
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(gone)
        self._stop_reading()

    def _stop_reading(self) -> None:
        if self._reader_loop is not None:
            self._reader_loop.remove_reader(self._frames.fd)
            self._reader_loop = None

    def _on_readable(self) -> None:
        """Hand each answer that has arrived whole to the oldest waiting call (in the loop's thread)."""
        try:
            self._frames.fill()
            while self._pending:
                answer = self._frames.next()
                if answer is None:
                    break
                fut = self._pending.popleft()
                if not fut.done():
                    fut.set_result(answer)
        except OSError as e:
            self._frames.eof = True
            self._fail_pending(e)
            return
        if self._frames.eof and self._pending:
            self._fail_pending(EOFError("the worker closed its pipe"))
            return
        if not self._pending:
            self._stop_reading()

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

    def rerank(self, user_id: str, features: Dict[str, List[str]], candidates: Sequence[str],
               candidate_features: Dict[str, List[str]]) -> Tuple[List[str], List[float]]:
        return self._call("rerank", user_id, features, list(candidates), candidate_features)

    async def rerank_async(self, user_id: str, features: Dict[str, List[str]], candidates: Sequence[str],
                           candidate_features: Dict[str, List[str]]) -> Tuple[List[str], List[float]]:
        return await self._acall("rerank", user_id, features, list(candidates), candidate_features)

    def alive(self) -> bool:
        return not self._closed and self._process.is_alive()

    @property
    def pid(self) -> int:
        """The worker process (/health shows it)."""
        return self._process.pid

    def _start_another(self) -> "WorkerModel":
        new = _spawn(self._snapshot.dir, self._snapshot, **self._spawn)
        new.path, new.fingerprint = self.path, self.fingerprint  # the export it copies, for the slot
        return new

    def prepare_spare(self) -> None:
        """Load a spare process on this export in a background thread, for ``revive``."""
        def run():
            try:
                spare = self._start_another()
            except Exception as e:  # no spare: revive() starts one when needed
                log.warning("model %s: no spare process: %s", self.version, e)
                return
            with self._spare_lock:
                if self._closed or self._spare is not None:
                    keep = None
                else:
                    self._spare, keep = spare, spare
            if keep is None:
                spare.close()
        threading.Thread(target=run, name=f"rankers-spare-{self.version}", daemon=True).start()

    def revive(self) -> "WorkerModel":
        """A live worker on this model's export: the spare when one is ready (at once), else
        a new process on the service's snapshot of its files (not the deployed path: those may
        have changed or broken since); ModelLoadError if that fails. The new worker prepares
        its own spare when this one had one."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.alive():
            spare.prepare_spare()
            return spare
        new = self._start_another()
        if spare is not None or self._spawn.get("spare"):
            new.prepare_spare()
        return new

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker after the calls in flight, if any (their answers are handed out first)."""
        deadline = time.monotonic() + timeout_s
        while self._reader_loop is not None and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._requests.send(("stop", ()))
                except OSError:
                    pass
            if self._outbox is not None:
                self._outbox.put(None)
            self._requests.close()
            self._answers.close()
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close(timeout_s)
        self._process.join(timeout_s)
        if self._process.is_alive():
            log.warning("model process %s did not stop; killing it", self._process.pid)
            self._process.kill()
            self._process.join(timeout_s)
        self._snapshot.release()


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


class _Snapshot:
    """The files of one export, hard-linked (copied where links cannot be made) into a
    directory of the service's own, so a worker can be started again on that export after the
    deployed directory was replaced or deleted. Shared by the workers started from it; removed
    when the last of them closes."""

    PREFIX = "rankers-serving-"

    def __init__(self, export_dir: str):
        self.dir = tempfile.mkdtemp(prefix=f"{self.PREFIX}{owner_tag()}")
        self.users = 0
        self._lock = threading.Lock()
        try:
            for name in sorted(os.listdir(export_dir)):
                src = os.path.join(export_dir, name)
                if os.path.isfile(src):
                    try:
                        os.link(src, os.path.join(self.dir, name))
                    except OSError:  # another file system, or links not allowed
                        shutil.copy2(src, os.path.join(self.dir, name))
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def acquire(self) -> "_Snapshot":
        with self._lock:
            self.users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users <= 0:
                shutil.rmtree(self.dir, ignore_errors=True)


def remove_orphan_snapshots() -> None:
    """Remove the export snapshots left in the temp directory by services on this host that
    were killed (a closed worker removes its own)."""
    remove_dead_owners(Path(tempfile.gettempdir()), [_Snapshot.PREFIX])


def _spawn(path: str, snapshot: "_Snapshot", num_threads: int, jit_optimize: bool, timeout_s: float,
           spare: bool = False) -> WorkerModel:
    """A worker process that loads the export at ``path``; ModelLoadError if it fails."""
    ctx = _context()
    req_r, req_w = ctx.Pipe(duplex=False)
    ans_r, ans_w = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker_main, args=(req_r, ans_w, str(path), num_threads, jit_optimize),
                       name="rankers-model", daemon=True)
    proc.start()
    req_r.close()
    ans_w.close()
    try:
        if not ans_r.poll(timeout_s):
            raise ModelLoadError(f"{path}: the model process did not report within {timeout_s} s")
        status, payload = ans_r.recv()
    except EOFError:
        proc.join(5)
        req_w.close()
        ans_r.close()
        raise ModelLoadError(f"{path}: the model process exited with {proc.exitcode} while loading") from None
    except BaseException:
        proc.kill()
        proc.join(5)
        req_w.close()
        ans_r.close()
        raise
    if status != "ready":
        proc.join(5)
        req_w.close()
        ans_r.close()
        raise ModelLoadError(payload)
    return WorkerModel(payload, proc, req_w, ans_r, snapshot.acquire(),
                       dict(num_threads=num_threads, jit_optimize=jit_optimize, timeout_s=timeout_s, spare=spare))


def start_worker(path: Union[str, Path], num_threads: int = 1, jit_optimize: bool = False,
                 timeout_s: float = 300.0, spare: bool = False) -> WorkerModel:
    """Load and validate the export at ``path`` in a new process; ModelLoadError if it fails.
    The worker loads the service's snapshot of the export's files (``revive`` starts another
    on it when the worker dies); with ``spare``, a second process loads it too, in the
    background, and takes over at once when the first dies."""
    fp = fingerprint(path)
    try:
        snapshot = _Snapshot(fp[0])
    except OSError as e:  # the export went away between the two looks
        raise ModelLoadError(f"{path}: cannot read the export's files: {e}") from e
    try:
        if fingerprint(path) != fp:
            raise ModelLoadError(f"{path} changed while loading; will load the new export")
        model = _spawn(snapshot.dir, snapshot, num_threads, jit_optimize, timeout_s, spare)
    except ModelLoadError as e:
        shutil.rmtree(snapshot.dir, ignore_errors=True)
        raise ModelLoadError(str(e).replace(snapshot.dir, fp[0])) from None  # name the user's files
    except BaseException:
        shutil.rmtree(snapshot.dir, ignore_errors=True)
        raise
    model.path, model.fingerprint = fp[0], fp
    if spare:
        model.prepare_spare()
    return model
