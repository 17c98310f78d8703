"""The real service: scripts/serve.py under uvicorn in a child process, hot swaps under load."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from benchmarks.load import SERVE_SCRIPT, ServerProcess, http_json, http_request, run_load
from rankers.serving.model import repoint
from tests.conftest import version_of


def wait_for(server, predicate, timeout_s=30.0):
    """Poll /health until ``predicate(champion status)`` holds (bounded); returns the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        champ = http_json(server.host, server.port, "GET", "/health")[1]["variants"]["champion"]
        if predicate(champ) or time.monotonic() > deadline:
            return champ
        time.sleep(0.05)


def test_symlink_swaps_under_load_fail_no_request(exports, tmp_path):
    link = tmp_path / "current"
    repoint(link, exports["a"])
    a, b = version_of(exports["a"]), version_of(exports["b"])
    bodies = [json.dumps({"user_id": f"u{i}", "k": 10}).encode() for i in range(20)]
    bodies.append(json.dumps({"user_id": "new", "features": {"country": ["FR"]}, "k": 10}).encode())
    overrides = [f"model_path={link}", "poll_interval_s=0.1", f"events_path={tmp_path / 'events.csv'}",
                 f"impressions_path={tmp_path / 'impressions.jsonl'}",
                 f"hydra.run.dir={tmp_path / 'hydra'}", "log_level=warning"]
    with ServerProcess(overrides, tmp_path / "server.log") as server:

        def break_after_b():  # a broken export, once B serves (a busy machine may load B slowly)
            wait_for(server, lambda c: c["version"] == b)
            repoint(link, exports["broken"])

        res = run_load(server.host, server.port, "/recommend", bodies, rate=100, duration_s=5.0, workers=4,
                       scheduled=[(1.0, lambda: repoint(link, exports["b"])), (1.1, break_after_b)])
        champ = wait_for(server, lambda c: c["refused"] >= 1)
        _, ev = http_json(server.host, server.port, "POST", "/events",
                          {"user_id": "u1", "item_id": "i2", "event": "cart"})
        metrics = http_request(server.host, server.port, "GET", "/metrics")[1].decode()
        log_tail = server.log_tail()
    assert res.n_errors == 0, (res.errors[:5], log_tail)
    assert len(res.status) == 500 and not np.isnan(res.latency_s).any()
    order = list(res.version)
    assert b in order, "the swap to B landed during the run"
    first_b = order.index(b)
    assert set(order[:first_b]) == {a} and set(order[first_b:]) == {b}, "A before the swap, B after, never back"
    assert res.due_s[first_b] >= 1.0
    assert champ["version"] == b and champ["swaps"] == 1 and champ["refused"] == 1
    assert "cannot load" in champ["last_error"] and "refused new export" in log_tail
    assert ev["variant"] == "champion" and (tmp_path / "events.csv").read_text().count("\n") == 2
    assert 'rankers_model_swaps_total{result="refused",variant="champion"} 1.0' in metrics


def test_serve_script_refuses_to_start_without_a_model(tmp_path):
    proc = subprocess.run([sys.executable, str(SERVE_SCRIPT), f"model_path={tmp_path / 'nothing'}",
                           f"hydra.run.dir={tmp_path / 'hydra'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "cannot start the service" in proc.stderr and "not an export directory" in proc.stderr
    proc = subprocess.run([sys.executable, str(SERVE_SCRIPT), f"hydra.run.dir={tmp_path / 'hydra'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "model_path" in proc.stderr


def test_killed_workers_are_replaced_from_the_snapshot_and_health_tells(exports, tmp_path):
    # kill -9 of the model's process used to fail a third of the requests until the watcher
    # reloaded from disk (and all of them if the deployed export had become unloadable)
    link = tmp_path / "current"
    repoint(link, exports["a"])
    a = version_of(exports["a"])
    bodies = [json.dumps({"user_id": f"u{i}", "k": 10}).encode() for i in range(20)]
    overrides = [f"model_path={link}", "poll_interval_s=0.2", f"events_path={tmp_path / 'events.csv'}",
                 f"impressions_path={tmp_path / 'impressions.jsonl'}",
                 f"hydra.run.dir={tmp_path / 'hydra'}", "log_level=warning"]
    with ServerProcess(overrides, tmp_path / "server.log") as server:
        repoint(link, exports["broken"])  # the deployed files cannot be loaded any more
        wait_for(server, lambda c: c["refused"] >= 1)
        kills = []

        def kill():
            pid = http_json(server.host, server.port, "GET", "/health")[1]["variants"]["champion"]["pid"]
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)

        res = run_load(server.host, server.port, "/recommend", bodies, rate=100, duration_s=6.0, workers=4,
                       scheduled=[(t, kill) for t in (1.0, 2.0, 3.0, 4.0)])
        champ = wait_for(server, lambda c: c["revived"] >= 4 and c["alive"])
        status, health = http_json(server.host, server.port, "GET", "/health")
        big = json.dumps({"user_id": "u1", "k": 10, "exclude": [f"i{j}-" + "x" * 95 for j in range(4000)]}).encode()
        big_answers = [http_request(server.host, server.port, "POST", "/recommend", json.loads(big))[0] for _ in range(6)]
        after = http_json(server.host, server.port, "GET", "/health")[1]["variants"]["champion"]
        log_tail = server.log_tail()
    assert len(set(kills)) == 4, kills  # each kill hit a new process
    failed = int((res.status != 200).sum())
    assert failed <= 0.01 * len(res.status), (failed, res.errors[:5], log_tail)
    assert set(v for v in res.version if v is not None) == {a}  # the same export, though the link is broken
    assert status == 200 and health["status"] == "ok" and champ["version"] == a
    # a ~400 KB request is answered and restarts nothing (it used to look like a dead worker)
    assert len(big) > 400_000 and big_answers == [200] * 6
    assert after["revived"] == champ["revived"] and after["pid"] == champ["pid"]
