"""Benchmark tools: interleaved timing, a CPU monitor, the service in a child process and an
open-loop HTTP load generator; ``bench_inprocess`` and ``bench_http`` (benchmarks/serving.py).

The HTTP run starts the real service (scripts/serve.py under uvicorn) in a child process
and drives it from this process with an open-loop load generator: request i is due at
``t0 + i / rate`` whatever happened before, and its latency is measured from that due time,
so a stall shows up in the figures instead of silently lowering the rate. Every loop is
bounded: ``rate * duration`` requests, a per-request timeout, and a deadline for the run.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rankers.serving.model import repoint

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[1]  # the source checkout the benchmarks live in
SERVE_SCRIPT = CHECKOUT / "scripts" / "serve.py"


def summarize(seconds: Sequence[float]) -> Dict[str, float]:
    """n, p50/p99/max in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def time_calls(fn: Callable[[], object], calls: int, warmup: int = 50) -> Dict[str, float]:
    """Latency summary of ``calls`` sequential calls of ``fn`` after ``warmup`` untimed ones."""
    return time_interleaved({"fn": fn}, calls, warmup, rounds=1)["fn"]


def time_interleaved(fns: Dict[str, Callable[[], object]], calls: int, warmup: int = 50,
                     rounds: int = 10) -> Dict[str, Dict[str, float]]:
    """Latency summaries of ``calls`` calls of each function, taken in ``rounds`` alternating
    blocks: this machine's speed drifts within seconds, and alternation lets each function
    meet the same drift, so their figures compare."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for r in range(rounds):
        n = calls * (r + 1) // rounds - calls * r // rounds
        for name, fn in fns.items():
            for _ in range(n):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return {name: summarize(v) for name, v in times.items()}


def bench_inprocess(model_ts: Union[str, Path], user_id: str, k: int = 100, calls: int = 2000,
                    warmup: int = 50, baseline_ts: Union[str, Path, None] = None) -> Dict[str, Dict[str, float]]:
    """``recommend`` latency of a model.ts for one user, and its parts measured alone.

    Returns {"recommend": summary, "recommend_baseline": the same call on ``baseline_ts``
    (if given; timed in alternation with "recommend"), "user_vector": ..., "scan_fp32": the
    exact scores of the catalogue, "scan_fp16": the approximate scan (models exported with
    it), "topk": torch.topk of k over the scores, "topk_blocked": the two-stage top-k that
    recommend uses}; the parts show where the time goes.
    """
    from rankers.artifact.scan import topk_blocked

    m = torch.jit.load(str(model_ts), map_location="cpu")
    calls_of = {"recommend": lambda: m.recommend(user_id, {}, k, [])}
    if baseline_ts is not None:
        base = torch.jit.load(str(baseline_ts), map_location="cpu")
        calls_of["recommend_baseline"] = lambda: base.recommend(user_id, {}, k, [])
    with CpuMonitor() as cpu:
        out = time_interleaved(calls_of, calls, warmup)
    out["recommend"]["others_cores"] = cpu.others
    parts = max(200, calls // 4)
    out["user_vector"] = time_calls(lambda: m.user_vector(user_id, {}), parts, warmup)
    u = m.user_vector(user_id, {})
    with torch.no_grad():
        out["scan_fp32"] = time_calls(lambda: m.catalogue_scores(u), parts, warmup)
        if m.approximate:
            out["scan_fp16"] = time_calls(lambda: m.approximate_scores(u), parts, warmup)
        s = m.catalogue_scores(u)
        out["topk"] = time_calls(lambda: torch.topk(s, k), parts, warmup)
        out["topk_blocked"] = time_calls(lambda: topk_blocked(s, k), parts, warmup)
    return out


class CpuMonitor:
    """Cores used by other processes while a benchmark runs (Linux /proc; None elsewhere).

    This machine is shared: latency figures mean little unless we know how much of the two
    cores something else took meanwhile. ``others`` = machine-wide busy cores minus those of
    this process and the process trees of ``pids`` (the server and its model workers).
    """

    def __init__(self, pids: Sequence[int] = ()):
        self.pids = list(pids)
        self.others: Optional[float] = None
        self.ours: Optional[float] = None

    @staticmethod
    def _machine() -> float:
        v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    def _tree(self) -> List[int]:
        out = [os.getpid()] + self.pids
        for p in out:  # grows while iterating: children, grandchildren, ...
            try:
                for t in os.listdir(f"/proc/{p}/task"):
                    out += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
            except OSError:
                pass
        return out

    def _ours(self) -> Dict[int, float]:
        out = {}
        for p in self._tree():
            try:
                f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                out[p] = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return out

    def __enter__(self) -> "CpuMonitor":
        self._ok = os.path.exists("/proc/stat")
        if self._ok:
            self._t0, self._m0, self._o0 = time.perf_counter(), self._machine(), self._ours()
        return self

    def __exit__(self, *exc) -> None:
        if not self._ok:
            return
        dt = time.perf_counter() - self._t0
        o1 = self._ours()
        # processes that ended meanwhile are missed; their time counts as "others" (an overestimate)
        ours = sum(v - self._o0.get(p, 0.0) for p, v in o1.items())
        self.ours = ours / dt
        self.others = max(0.0, (self._machine() - self._m0 - ours) / dt)


# --- HTTP ---------------------------------------------------------------------------------

def free_port() -> int:
    """A free TCP port on 127.0.0.1 (closed again; the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(host: str, port: int, method: str, path: str, body: Optional[dict] = None,
                 timeout: float = 10.0) -> Tuple[int, bytes]:
    """One request on a fresh connection -> (status, raw body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_json(host: str, port: int, method: str, path: str, body: Optional[dict] = None,
              timeout: float = 10.0) -> Tuple[int, dict]:
    """One request on a fresh connection -> (status, parsed JSON body)."""
    status, raw = http_request(host, port, method, path, body, timeout)
    return status, (json.loads(raw) if raw else {})


class ServerProcess:
    """scripts/serve.py in a child process; a context manager that always stops it.

    ``overrides`` are Hydra overrides (``key=value``) besides host/port. Output goes to
    ``log_path``; a server that exits or is not healthy within ``startup_timeout`` raises
    RuntimeError with the log's tail.
    """

    def __init__(self, overrides: Sequence[str], log_path: Union[str, Path], port: Optional[int] = None,
                 host: str = "127.0.0.1", startup_timeout: float = 90.0):
        if not SERVE_SCRIPT.is_file():
            raise FileNotFoundError(f"{SERVE_SCRIPT} not found: the benchmarks run from a source checkout")
        self.host, self.port = host, port or free_port()
        self.overrides = list(overrides) + [f"host={host}", f"port={self.port}"]
        self.log_path = Path(log_path)
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "ServerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(SERVE_SCRIPT)] + self.overrides,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _ = http_json(self.host, self.port, "GET", "/health", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server was not healthy after {self.startup_timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown (lifespan stops the watcher)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class LoadResult:
    """Per request (in due order): latency from its due time, HTTP status (-1: no response),
    model_version of the answer, due time after t0. Plus the error messages seen."""

    latency_s: np.ndarray
    status: np.ndarray
    version: List[Optional[str]]
    due_s: np.ndarray
    errors: List[str] = field(default_factory=list)

    @property
    def n_errors(self) -> int:
        return int((self.status != 200).sum())

    def summary(self) -> Dict[str, float]:
        out = summarize(self.latency_s[self.status == 200])
        out.update(requests=int(self.status.size), errors=self.n_errors)
        return out


class _KeepAlive:
    """A minimal HTTP/1.1 keep-alive client for the load generator: prebuilt request bytes in,
    (status, body) out, bodies read by Content-Length. http.client plus json.loads cost about
    0.5 ms of CPU a request, which on a 2-core machine is taken from the server under test."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def request(self, raw: bytes) -> Tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def close(self) -> None:
        self.sock.close()


def _model_version(body: bytes) -> Optional[str]:
    """The "model_version" of a JSON answer, found without parsing the rest (cheap)."""
    key = b'"model_version":'
    at = body.find(key)
    if at < 0:
        return None
    start = body.index(b'"', at + len(key)) + 1
    return body[start:body.index(b'"', start)].decode()


def run_load(host: str, port: int, path: str, bodies: Sequence[bytes], rate: float, duration_s: float,
             workers: int = 8, timeout_s: float = 5.0,
             scheduled: Sequence[Tuple[float, Callable[[], None]]] = ()) -> LoadResult:
    """POST ``bodies`` (cycled) to ``path`` at ``rate`` requests/s for ``duration_s`` seconds.

    ``workers`` threads, each with its own keep-alive connection, take requests i = w, w +
    workers, ...; ``scheduled`` (seconds after start, callback) run on a side thread, e.g. a
    model swap. The run ends after ``duration_s + timeout_s + 10`` seconds at the latest.
    """
    if rate <= 0 or duration_s <= 0 or not bodies:
        raise ValueError(f"need rate > 0, duration_s > 0 and bodies; got {rate}, {duration_s}, {len(bodies)}")
    n = int(round(rate * duration_s))
    raw = [f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    latency = np.full(n, np.nan)
    status = np.full(n, -1, dtype=np.int64)
    version: List[Optional[str]] = [None] * n
    errors: List[str] = []
    hard_stop = time.perf_counter() + duration_s + timeout_s + 10.0
    t0 = time.perf_counter() + 0.2  # all threads started before the first request is due

    def worker(w: int) -> None:
        conn = None
        try:
            for i in range(w, n, workers):
                due = t0 + i / rate
                now = time.perf_counter()
                if now > hard_stop:
                    break
                if due > now:
                    time.sleep(due - now)
                try:
                    conn = conn or _KeepAlive(host, port, timeout_s)
                    code, body = conn.request(raw[i % len(raw)])
                    status[i] = code
                    if code == 200:
                        version[i] = _model_version(body)
                    else:
                        errors.append(f"HTTP {code}: {body[:200]!r}")
                except (OSError, ValueError, IndexError) as e:  # timeouts, resets; a garbled answer
                    errors.append(f"{type(e).__name__}: {e}")
                    if conn is not None:
                        conn.close()
                    conn = None
                latency[i] = time.perf_counter() - due
        finally:
            if conn is not None:
                conn.close()

    def side() -> None:
        for at, fn in sorted(scheduled, key=lambda x: x[0]):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                fn()
            except Exception as e:  # report, do not kill the run
                errors.append(f"scheduled action at {at} s failed: {e}")

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(workers)]
    threads.append(threading.Thread(target=side, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, hard_stop - time.perf_counter()) + 1.0)
    return LoadResult(latency, status, version, np.arange(n) / rate, errors)


def bench_http(workdir: Union[str, Path], export_a: Union[str, Path], export_b: Union[str, Path], k: int = 100,
               rate: float = 200.0, duration_s: float = 30.0, swap_at_s: Optional[float] = 15.0, workers: int = 8,
               num_threads: int = 1, poll_interval_s: float = 0.5, seed: int = 0,
               impressions: bool = True) -> Dict[str, object]:
    """The HTTP benchmark: the service on a symlink to ``export_a``, load at ``rate`` for
    ``duration_s``, the symlink repointed to ``export_b`` at ``swap_at_s`` (None: no swap).

    ``impressions``: the impression log on (the service's default) or off.

    Returns the load summary plus: the answers per version (A then B), the due time of the
    first B answer, and the latency summary from 1 s before the swap to 1 s after it landed.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    meta_a = json.loads((Path(export_a) / "metadata.json").read_text())
    ver_a = meta_a["version"]
    ver_b = json.loads((Path(export_b) / "metadata.json").read_text())["version"]
    n_users = int(meta_a["n_known_users"])
    link = work / "current"
    repoint(link, export_a)
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(512):  # known users, 1 in 8 a new user described by features
        if i % 8 == 7 or n_users == 0:
            body = {"user_id": f"new-{i}", "features": {"country": ["DE"]}, "k": k}
        else:
            body = {"user_id": f"u{int(rng.integers(n_users))}", "k": k}
        bodies.append(json.dumps(body).encode())
    overrides = [f"model_path={link}", f"poll_interval_s={poll_interval_s}", f"num_threads={num_threads}",
                 "events_path=null", f"impressions_path={work / 'impressions.jsonl'}" if impressions else "impressions_path=null",
                 f"hydra.run.dir={work / 'hydra'}", "log_level=warning"]
    scheduled = [(swap_at_s, lambda: repoint(link, export_b))] if swap_at_s is not None else []
    with ServerProcess(overrides, work / "server.log") as server:
        with CpuMonitor([server.proc.pid]) as cpu:
            res = run_load(server.host, server.port, "/recommend", bodies, rate, duration_s, workers,
                           scheduled=scheduled)
    out: Dict[str, object] = dict(res.summary())
    out.update(rate=rate, duration_s=duration_s, k=k, version_a=ver_a, version_b=ver_b,
               ours_cores=cpu.ours, others_cores=cpu.others,
               answered_a=sum(v == ver_a for v in res.version), answered_b=sum(v == ver_b for v in res.version),
               error_messages=sorted(set(res.errors))[:5])
    first_b = [t for t, v in zip(res.due_s, res.version) if v == ver_b]
    out["first_b_s"] = float(first_b[0]) if first_b else None
    if swap_at_s is not None and first_b:
        window = (res.due_s >= swap_at_s - 1.0) & (res.due_s <= first_b[0] + 1.0) & (res.status == 200)
        out["around_swap"] = summarize(res.latency_s[window])
    return out


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rankers-bench-"))


def bench_worker_kills(workdir: Union[str, Path], export: Union[str, Path], broken: Optional[Union[str, Path]] = None,
                       kills: int = 10, rate: float = 200.0, duration_s: float = 14.0, first_kill_s: float = 2.0,
                       every_s: float = 1.0, k: int = 100, workers: int = 8,
                       health_every_s: float = 0.05, overrides: Sequence[str] = ()) -> Dict[str, object]:
    """The fault-injection run: the service on a symlink to ``export`` under load at ``rate``;
    its model process is killed (SIGKILL) ``kills`` times, ``every_s`` apart from
    ``first_kill_s``; with ``broken``, the symlink points at that unloadable export from the
    start, so a replacement cannot come from the deployed files. /health is polled throughout
    and checked against the truth: a sample is a lie when it says ``alive`` for a process that
    was already killed.

    Returns the load summary plus: kills, the failed requests due after each replacement was
    up (/health showing a new pid), health samples, degraded samples, lies, the slot's revived count.
    ``overrides``: the service's, e.g. ``spare_worker=false``.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    link = work / "current"
    repoint(link, export)
    meta = json.loads((Path(export) / "metadata.json").read_text())
    n_users = max(1, int(meta["n_known_users"]))
    bodies = [json.dumps({"user_id": f"u{i % n_users}", "k": k}).encode() for i in range(256)]
    overrides = [f"model_path={link}", "poll_interval_s=0.5", "events_path=null",
                 f"impressions_path={work / 'impressions.jsonl'}",
                 f"hydra.run.dir={work / 'hydra'}", "log_level=warning", *overrides]
    killed: List[Tuple[float, int]] = []  # (seconds after t0, pid)
    samples: List[Tuple[float, int, bool, Optional[int]]] = []  # (t, http status, alive, pid)
    with ServerProcess(overrides, work / "server.log") as server:
        if broken is not None:
            repoint(link, broken)
            deadline = time.monotonic() + 30
            while http_json(server.host, server.port, "GET", "/health")[1]["variants"]["champion"]["refused"] < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not notice the broken export")
                time.sleep(0.05)
        stop = threading.Event()
        t0 = time.perf_counter() + 0.2  # run_load's t0, near enough for a 1 s spacing

        def kill() -> None:
            pid = http_json(server.host, server.port, "GET", "/health")[1]["variants"]["champion"]["pid"]
            killed.append((time.perf_counter() - t0, pid))
            os.kill(pid, signal.SIGKILL)

        def poll() -> None:
            while not stop.is_set():
                try:
                    code, h = http_json(server.host, server.port, "GET", "/health", timeout=2.0)
                    champ = h["variants"]["champion"]
                    samples.append((time.perf_counter() - t0, code, bool(champ["alive"]), champ["pid"]))
                except (OSError, ValueError, KeyError):
                    samples.append((time.perf_counter() - t0, -1, False, None))
                stop.wait(health_every_s)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        res = run_load(server.host, server.port, "/recommend", bodies, rate, duration_s, workers,
                       scheduled=[(first_kill_s + i * every_s, kill) for i in range(kills)])
        stop.set()
        poller.join(5)
        final = http_json(server.host, server.port, "GET", "/health")[1]["variants"]["champion"]
    dead = {pid: at for at, pid in killed}
    # the service learns of a death when the fork server reaps the process: allow it 0.1 s
    lies = sum(1 for t, code, alive, pid in samples if alive and pid in dead and t > dead[pid] + 0.1)
    # a replacement is up once /health shows a pid that was never killed after the kill
    up_at = []
    for at, pid in killed:
        later = [t for t, code, alive, p in samples if t > at and alive and dead.get(p, np.inf) > t]
        up_at.append(later[0] if later else float("inf"))
    failed = res.status != 200
    after_up = sum(int((failed & (res.due_s > up) & (res.due_s < (killed[i + 1][0] if i + 1 < len(killed) else np.inf))).sum())
                   for i, up in enumerate(up_at))
    out: Dict[str, object] = dict(res.summary())
    out.update(rate=rate, duration_s=duration_s, kills=len(killed), failed_after_replacement=after_up,
               replaced_within_s=[round(u - a, 3) for u, (a, _) in zip(up_at, killed)],
               health_samples=len(samples), health_degraded=sum(1 for s in samples if s[1] == 503),
               health_lies=lies, revived=final["revived"], error_messages=sorted(set(res.errors))[:5])
    return out
