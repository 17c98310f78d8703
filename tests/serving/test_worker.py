"""Models in worker processes: same answers, clear load errors, swaps and crashes."""
import os
import signal
import time

import pytest
import torch

from rankers.serving.bench import repoint
from rankers.serving.model import ModelLoadError, ModelSlot
from rankers.serving.worker import ModelCallError, WorkerGone, start_worker
from tests.serving.conftest import N_ITEMS, version_of


def test_worker_answers_like_the_model_in_this_process(exports):
    w = start_worker(exports["a"])
    try:
        m = torch.jit.load(str(exports["a"] / "model.ts"))
        assert w.version == version_of(exports["a"]) and w.n_items == N_ITEMS and "u1" in w.known_users
        assert w.recommend("u1", {"country": ["DE"]}, 6, ["i2"]) == m.recommend("u1", {"country": ["DE"]}, 6, ["i2"])
        assert w.score("u1", {}, ["i1", "i2"]) == pytest.approx(m.score("u1", {}, ["i1", "i2"]), abs=1e-6)
        with pytest.raises(ModelCallError, match="unknown item id 'zzz'"):
            w.score("u1", {}, ["zzz"])
        assert w.alive()
    finally:
        w.close()
    assert not w.alive()
    with pytest.raises(WorkerGone):
        w.recommend("u1", {}, 3, [])


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
