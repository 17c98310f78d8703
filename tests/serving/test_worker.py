"""Models in worker processes: same answers, clear load errors, swaps and crashes."""
import asyncio
import os
import signal
import socket
import sys
import tempfile
import threading
import time

import pytest
import torch

from rankers.serving.model import repoint
from rankers.serving.model import ModelLoadError, ModelSlot, RequestError
from rankers.serving.worker import LOAD_NICE, WorkerGone, _lower_this_thread, start_worker
from tests.conftest import N_ITEMS, version_of


def test_worker_answers_like_the_model_in_this_process(exports):
    w = start_worker(exports["a"])
    try:
        m = torch.jit.load(str(exports["a"] / "model.ts"))
        assert w.version == version_of(exports["a"]) and w.n_items == N_ITEMS and "u1" in w.known_users
        assert w.recommend("u1", {"country": ["DE"]}, 6, ["i2"]) == m.recommend("u1", {"country": ["DE"]}, 6, ["i2"])
        assert w.score("u1", {}, ["i1", "i2"]) == pytest.approx(m.score("u1", {}, ["i1", "i2"]), abs=1e-6)
        with pytest.raises(RequestError, match="unknown item id 'zzz'"):
            w.score("u1", {}, ["zzz"])
        assert w.alive()
    finally:
        w.close()
    assert not w.alive()
    with pytest.raises(WorkerGone):
        w.recommend("u1", {}, 3, [])


@pytest.fixture
def worker(exports):
    """A worker on export A, closed after the test."""
    w = start_worker(exports["a"])
    yield w
    w.close()


def test_concurrent_async_calls_each_get_their_own_answer(worker):
    # The service awaits the worker on its event loop; many requests in flight at once must
    # never receive each other's answers (each asks for a different k, so a mix-up shows).
    w = worker
    expected = {k: w.recommend(f"u{k}", {}, k, []) for k in range(1, 13)}

    async def main():
        calls = [w.recommend_async(f"u{k}", {}, k, []) for k in range(1, 13)]
        calls.append(w.score_async("u1", {}, ["i3", "i4"]))
        return await asyncio.gather(*calls)

    answers = asyncio.run(main())
    assert dict(zip(range(1, 13), answers[:-1])) == expected
    assert answers[-1] == w.score("u1", {}, ["i3", "i4"])


def test_a_cancelled_async_call_does_not_leave_its_answer_for_the_next(worker):
    w = worker

    async def main():
        first = asyncio.ensure_future(w.recommend_async("u1", {}, 7, []))
        while not w._pending:  # sent, now waiting for the worker's answer
            await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await w.recommend_async("u2", {}, 3, [])

    assert asyncio.run(main()) == w.recommend("u2", {}, 3, [])


def test_pipelined_calls_of_a_worker_that_dies_fail_with_worker_gone(worker):
    w = worker

    async def main():
        calls = [asyncio.ensure_future(w.recommend_async("u1", {}, 5, [])) for _ in range(200)]
        while not w._pending:
            await asyncio.sleep(0)
        os.kill(w._process.pid, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=30)

    results = asyncio.run(main())
    gone = [r for r in results if isinstance(r, WorkerGone)]
    assert gone and all(isinstance(r, (WorkerGone, tuple)) for r in results)  # none hangs, none mixed up
    assert not w.alive()


def test_broken_export_fails_in_the_worker_with_the_reason(exports):
    with pytest.raises(ModelLoadError, match="cannot load"):
        start_worker(exports["broken"])


def test_slot_reloads_when_its_worker_dies(exports, tmp_path):
    link = tmp_path / "current"
    repoint(link, exports["a"])
    slot = ModelSlot("champion", link, loader=start_worker, grace_s=0.0)
    try:
        first = slot.current
        os.kill(first._process.pid, signal.SIGKILL)
        first._process.join(10)
        with pytest.raises(WorkerGone):
            first.recommend("u1", {}, 3, [])
        assert slot.check() and slot.current is not first and slot.current.alive()
        assert len(slot.current.recommend("u1", {}, 3, [])[0]) == 3
        repoint(link, exports["b"])
        second = slot.current
        assert slot.check() and slot.current.version == version_of(exports["b"])
        time.sleep(0.01)
        slot.check()  # closes the retired worker (grace 0)
        assert not second.alive()
    finally:
        slot.close()
    assert not slot.current.alive()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_the_loading_thread_runs_below_the_serving_threads():
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    own = nice()
    seen = {}

    def load():
        _lower_this_thread()
        seen["nice"] = nice()
    t = threading.Thread(target=load)
    t.start()
    t.join()
    assert seen["nice"] == LOAD_NICE or own > LOAD_NICE  # (a caller already nicer stays as it is)
    assert nice() == own  # the calling thread is untouched


def test_a_dead_worker_comes_back_from_the_snapshot_even_when_its_export_is_gone(exports, tmp_path):
    import shutil
    export = tmp_path / "export"
    shutil.copytree(exports["a"], export)
    w = start_worker(export)
    try:
        expected = w.recommend("u1", {}, 5, [])
        shutil.rmtree(export)  # the deployed files are gone (or replaced by a broken export)
        os.kill(w.pid, signal.SIGKILL)
        w._process.join(10)
        assert not w.alive()
        new = w.revive()
        try:
            assert new.alive() and new.pid != w.pid and new.version == w.version
            assert new.path == w.path and new.fingerprint == w.fingerprint  # the slot sees the same export
            assert new.recommend("u1", {}, 5, []) == expected
        finally:
            new.close()
    finally:
        w.close()
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"rankers-serving-{socket.gethostname()}-{os.getpid()}-")]


def test_the_spare_takes_over_at_once_and_a_new_spare_follows(exports):
    w = start_worker(exports["a"], spare=True)
    try:
        deadline = time.monotonic() + 60
        while w._spare is None and time.monotonic() < deadline:
            time.sleep(0.05)
        spare = w._spare
        assert spare is not None and spare.alive() and spare.pid != w.pid
        os.kill(w.pid, signal.SIGKILL)
        w._process.join(10)
        t = time.perf_counter()
        new = w.revive()
        assert new is spare and time.perf_counter() - t < 0.5  # no load: it was ready
        assert new.recommend("u1", {}, 3, []) == torch.jit.load(str(exports["a"] / "model.ts")).recommend("u1", {}, 3, [])
        while new._spare is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert new._spare is not None and new._spare.alive()  # the next death is covered too
        second = new._spare
        new.close()
        assert new._spare is None and not second.alive()  # closing a worker closes its spare
    finally:
        w.close()


def test_large_requests_and_answers_cross_the_pipes_whole(worker):
    # a request or an answer larger than the pipe's buffer (64 KB) used to fail with EAGAIN on
    # the non-blocking descriptor the event loop made, which looked like a dead worker
    items = [f"i{j % N_ITEMS}" for j in range(20_000)]  # ~180 KB out, ~200 KB of scores back
    exclude = [f"i{j}-" + "x" * 200 for j in range(3000)]  # ~600 KB out

    async def main():
        calls = [worker.score_async("u1", {}, items) for _ in range(3)]
        calls += [worker.recommend_async("u1", {}, 5, exclude) for _ in range(3)]
        return await asyncio.gather(*calls)

    try:  # the service's loop (uvicorn[standard]); uvloop makes the pipe non-blocking
        import uvloop
        answers = uvloop.run(main())
    except ImportError:
        answers = asyncio.run(main())
    assert all(a == answers[0] for a in answers[:3]) and len(answers[0]) == 20_000
    assert answers[3] == worker.recommend("u1", {}, 5, exclude)
    assert worker.alive()
