"""The production loop, simulated end to end on the synthetic shop.

Setup: the shop's history (``rankers.data.synthetic``) is the event log's first rows; a first
champion is trained on it (deliberately under-trained: ``first_epochs`` at ``first_lr``) and exported; the service runs
as its own process (``rankers serve``) with ``deploy/current`` (the champion) and
``deploy/challenger`` (the A/B challenger; the champion itself while there is none).

Each cycle:
1. Traffic: simulated users (the generator's own users, with their hidden tastes) ask
   ``/recommend``; each response is examined with position bias, and clicks, carts and
   purchases go to ``/events`` with the response's request_id (``World.react``). The first
   ``train_share`` of the requests are the retraining window, the rest the gate's held-out logs.
2. A/B read-out of the cycle's traffic when a challenger ran (``abtest.readout``); the
   challenger is promoted to champion (``deploy/current`` repointed under load) unless the
   champion won on purchases; else it is dropped.
3. Warm retraining from the champion on the window (``init_from``; the first retraining reads
   the whole log for ``first_retrain_epochs``: a challenger known to be better; at
   ``random_cycle`` the candidate is the champion with random weights: known to be worse).
4. The offline gate (``gate.evaluate``) on the held-out part; an accepted candidate becomes the
   challenger (``deploy/challenger`` repointed under load) for the next cycle's A/B test, a
   refused one does not (unless ``ab_refused``: the A/B test then checks the read-out against
   the gate).
Every repoint happens while requests flow, and the cycle waits until a response carries the new
model version. At the end the service is stopped (flushing its logs) and every successful
``/recommend`` is counted against the impression log's lines, across its rotations.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from rankers.data.events import DEFAULT_GRADES, EVENT_LOG_COLUMNS
from rankers.data.synthetic import World, events_frame, feature_overrides, generate
from rankers.production.abtest import ABReadout, readout
from rankers.production.gate import DEFAULT_MARGIN, GateReport, evaluate, write_report
from rankers.production.logs import read_events, read_impressions
from rankers.serving.ab import CHALLENGER, CHAMPION
from rankers.serving.impressions import log_files
from rankers.serving.model import repoint

log = logging.getLogger(__name__)


@dataclass
class SimulationConfig:
    """The simulated shop and loop (``scripts/simulate.py`` flags)."""

    workdir: str
    cycles: int = 5
    users: int = 3000
    items: int = 1000
    mean_views: float = 25.0
    requests: int = 2000          # /recommend calls per cycle
    organic: float = 1.0          # organic visits (browsing without a recommendation) per request
    organic_views: float = 4.0    # views per organic visit
    k: int = 10
    train_share: float = 0.7      # of a cycle's requests: the retraining window; the rest is held out
    challenger_share: float = 0.5
    first_epochs: int = 1
    first_lr: float = 0.0003      # the first champion is under-trained: the first retraining is known better
    first_retrain_epochs: int = 5
    random_cycle: Optional[int] = 3
    ab_refused: bool = False
    margin: float = DEFAULT_MARGIN
    concurrency: int = 4
    impressions_max_bytes: int = 256 << 10  # small: the log rotates several times a cycle
    position_bias: float = 1.0
    seed: int = 0


@dataclass
class Traffic:
    ok: int = 0
    failed: int = 0
    events: int = 0
    variants: Dict[str, int] = field(default_factory=dict)
    versions: set = field(default_factory=set)
    errors: List[str] = field(default_factory=list)


@dataclass
class CycleResult:
    cycle: int
    traffic: Traffic
    ab: Optional[ABReadout]
    promoted: Optional[bool]
    candidate: str
    gate: Optional[GateReport]
    swaps: List[float]  # seconds from each repoint to the first response of the new version
    train_seconds: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``rankers serve`` in its own process."""

    def __init__(self, work: Path, current: Path, challenger: Path, share: float, max_bytes: int):
        import httpx

        self.port = _free_port()
        self.events, self.impressions = work / "events.csv", work / "impressions.jsonl"
        cmd = [sys.executable, "-m", "rankers", "serve", f"model_path={current}", f"challenger_path={challenger}",
               f"challenger_share={share}", f"events_path={self.events}", f"impressions_path={self.impressions}",
               f"impressions_max_bytes={max_bytes}", f"port={self.port}", "poll_interval_s=0.2",
               "log_level=warning", f"hydra.run.dir={work / 'serve'}"]
        self.stderr = open(work / "serve.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.stderr, stderr=self.stderr)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30.0,
                                   limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; see {work / 'serve.log'}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service did not become healthy in 180 s; see {work / 'serve.log'}")

    def stop(self) -> None:
        """SIGINT: uvicorn shuts down and the impression log writes what it holds."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class Shoppers:
    """The generator's users, answering the service's lists as their hidden tastes say."""

    def __init__(self, world: World, seed: int, position_bias: float):
        self.world, self.tastes = world, world.user_tastes()
        self.rng = np.random.default_rng((seed, 7))
        self.lock = threading.Lock()
        self.position_bias = position_bias

    def visit(self, service: Service, user: int, k: int, traffic: Traffic) -> None:
        try:
            r = service.client.post("/recommend", json={"user_id": f"u{user}", "k": k})
            if r.status_code != 200:
                raise RuntimeError(f"/recommend {r.status_code}: {r.text[:200]}")
            body = r.json()
        except Exception as e:  # counted, not raised: the loop reports failed requests
            with self.lock:
                traffic.failed += 1
                traffic.errors.append(str(e)[:200])
            return
        items = np.array([int(i[1:]) for i in body["items"]])[None, :]
        with self.lock:  # one generator, drawn in turn
            click, cart, buy = self.world.react(self.tastes, np.array([user]), items, self.rng, self.position_bias)
            traffic.ok += 1
            traffic.variants[body["variant"]] = traffic.variants.get(body["variant"], 0) + 1
            traffic.versions.add(body["model_version"])
        for name, hit in (("view", click[0]), ("cart", cart[0]), ("purchase", buy[0])):
            for pos in np.flatnonzero(hit):
                self.event(service, traffic, {"user_id": f"u{user}", "item_id": body["items"][pos], "event": name,
                                              "variant": body["variant"], "model_version": body["model_version"],
                                              "request_id": body["request_id"]})

    def event(self, service: Service, traffic: Traffic, body: dict) -> None:
        """POST /events; a failure is counted, not raised."""
        try:
            e = service.client.post("/events", json=body)
            problem = None if e.status_code == 200 else f"/events {e.status_code}: {e.text[:200]}"
        except Exception as ex:  # a dropped connection is a failed request of the loop
            problem = f"/events: {ex}"[:200]
        with self.lock:
            if problem is None:
                traffic.events += 1
            else:
                traffic.failed += 1
                traffic.errors.append(problem)

    def browse(self, service: Service, users: np.ndarray, mean_views: float, traffic: Traffic) -> None:
        """Organic visits: events the recommendations did not cause (no request_id)."""
        with self.lock:
            rows, items, code = self.world.browse(self.tastes, users, mean_views, self.rng)
        names = np.array(list(DEFAULT_GRADES))
        for u, i, c in zip(rows, items, code):
            for name in names[:c + 1]:  # a purchase was viewed and carted first
                self.event(service, traffic, {"user_id": f"u{u}", "item_id": f"i{i}", "event": str(name)})


class Simulation:
    def __init__(self, cfg: SimulationConfig):
        self.cfg = cfg
        self.work = Path(cfg.workdir)
        if self.work.exists() and any(self.work.iterdir()):
            raise FileExistsError(f"{self.work} is not empty: give a new --workdir (a simulation starts a new shop)")
        self.work.mkdir(parents=True, exist_ok=True)
        self.deploy = self.work / "deploy"
        self.deploy.mkdir()
        self.current, self.challenger = self.deploy / "current", self.deploy / "challenger"
        self.world = World(cfg.users, cfg.items, cfg.mean_views, cfg.seed)
        self.shoppers = Shoppers(self.world, cfg.seed, cfg.position_bias)
        self.user_rng = np.random.default_rng((cfg.seed, 8))
        self.results: List[CycleResult] = []
        self._window_start: Optional[float] = None  # the previous cycle's start: the retraining window's
        self._challenger_accepted = True  # the gate's verdict on the challenger now in the A/B test

    # -- data and training ------------------------------------------------------------------
    def write_history(self) -> None:
        """The shop's past as the event log's first rows; the user and item tables."""
        log_, users, items = generate(self.cfg.users, self.cfg.items, self.cfg.mean_views, self.cfg.seed)
        df = events_frame(log_.deduplicate()).assign(variant="", model_version="", request_id="")
        df[list(EVENT_LOG_COLUMNS)].to_csv(self.work / "events.csv", index=False)
        users.to_parquet(self.work / "users.parquet")
        items.to_parquet(self.work / "items.parquet")

    def train(self, name: str, overrides: List[str]) -> tuple[Path, float]:
        """A training run on the event log into runs/<name>; returns (its export, fit seconds)."""
        from hydra import compose, initialize_config_module
        from omegaconf import open_dict

        from rankers.training.train import train

        base = ["data=files", f"data.train={self.work / 'events.csv'}", "data.test=null", "data.val_split=null",
                *feature_overrides(self.work / "users.parquet", self.work / "items.parquet"),
                "data.id_dropout=0.1", "callbacks=none", "baseline=false", "trainer.enable_progress_bar=false",
                f"seed={self.cfg.seed}", "num_threads=1"]
        with initialize_config_module("rankers.conf", version_base="1.3"):
            cfg = compose("train", overrides=base + overrides)
        out = self.work / "runs" / name
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "train.log", "w") as f, contextlib.redirect_stdout(f):  # the cycle table stays readable
            metrics = train(cfg)
        return out / "export", float(metrics["fit_seconds"])

    def random_candidate(self, name: str) -> Path:
        """The champion's model with fresh random weights (same catalogue and window): known worse."""
        import torch

        from rankers.artifact.writer import export, load_checkpoint

        net, bundle = load_checkpoint(Path(os.path.realpath(self.current)) / "checkpoint.pt")
        gen = torch.Generator().manual_seed(self.cfg.seed)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        meta = json.loads((Path(os.path.realpath(self.current)) / "metadata.json").read_text())
        return export(net, bundle, self.work / "runs" / name / "export", metrics=meta["metrics"], pt2=False)

    # -- traffic ----------------------------------------------------------------------------
    def traffic(self, service: Service, n: int, traffic: Traffic, organic: bool = True) -> Traffic:
        """n recommendation visits and, with ``organic``, ``cfg.organic`` organic visits per
        request (in groups of 8 users), interleaved over ``cfg.concurrency`` threads."""
        users = self.user_rng.integers(0, self.cfg.users, n)
        n_org = int(round(n * self.cfg.organic)) if organic else 0
        groups = np.array_split(self.user_rng.integers(0, self.cfg.users, n_org), max(1, n_org // 8)) if n_org else []
        tasks = [lambda u=int(u): self.shoppers.visit(service, u, self.cfg.k, traffic) for u in users]
        tasks += [lambda g=g: self.shoppers.browse(service, g, self.cfg.organic_views, traffic) for g in groups]
        order = self.user_rng.permutation(len(tasks))
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            list(pool.map(lambda t: tasks[t](), order))
        return traffic

    def swap(self, service: Service, link: Path, target: Path, traffic: Traffic) -> float:
        """Repoint ``link`` at ``target`` while requests flow; seconds until a response of the
        variant the link serves carries the new version."""
        version = json.loads((Path(target) / "metadata.json").read_text())["version"]
        variant = CHAMPION if link == self.current else CHALLENGER
        if os.path.realpath(link) == os.path.realpath(target):
            return 0.0
        stop = threading.Event()

        def load():
            while not stop.is_set():
                self.traffic(service, self.cfg.concurrency, traffic, organic=False)

        bg = threading.Thread(target=load, daemon=True)
        bg.start()
        t0 = time.perf_counter()
        try:
            repoint(link, target)
            deadline = time.time() + 120
            while time.time() < deadline:
                h = service.client.get("/health").json()
                if h.get("variants", {}).get(variant, {}).get("version") == version:
                    return time.perf_counter() - t0
                time.sleep(0.05)
            raise RuntimeError(f"the service did not serve {version} as {variant} within 120 s of the repoint")
        finally:
            stop.set()
            bg.join()

    # -- the loop ---------------------------------------------------------------------------
    def run(self, out=print) -> List[CycleResult]:
        cfg = self.cfg
        self.write_history()
        first, _ = self.train("v0", [f"trainer.max_epochs={cfg.first_epochs}", f"optim.lr={cfg.first_lr}"])
        repoint(self.current, first)
        repoint(self.challenger, first)
        service = Service(self.work, self.current, self.challenger, cfg.challenger_share, cfg.impressions_max_bytes)
        try:
            out(HEADER)
            for c in range(1, cfg.cycles + 1):
                self.results.append(self.cycle(service, c))
                out(row(self.results[-1]))
        finally:
            service.stop()
        self.impressions_logged = len(read_impressions(service.impressions))
        self.impression_files = len(log_files(service.impressions))
        self.requests_ok = sum(r.traffic.ok for r in self.results)
        return self.results

    def cycle(self, service: Service, c: int) -> CycleResult:
        cfg = self.cfg
        t_start = time.time()
        traffic = Traffic()
        ab_on = os.path.realpath(self.challenger) != os.path.realpath(self.current)
        n_train = int(cfg.requests * cfg.train_share)
        self.traffic(service, n_train, traffic)
        t_mid = time.time()
        self.traffic(service, cfg.requests - n_train, traffic)
        swaps: List[float] = []
        ab, promoted = None, None
        if ab_on:
            imp = read_impressions(service.impressions)
            ab = readout(imp[imp["timestamp"] >= t_start], self._events_since(service, t_start))
            lost = any(x.outcome == "purchase" and x.winner == CHAMPION for x in ab.comparisons)
            promoted = not lost and self._challenger_accepted
            if promoted:
                swaps.append(self.swap(service, self.current, Path(os.path.realpath(self.challenger)), traffic))
            swaps.append(self.swap(service, self.challenger, Path(os.path.realpath(self.current)), traffic))
        name = f"v{c}"
        t0 = time.perf_counter()
        if c == cfg.random_cycle:
            candidate = self.random_candidate(name)
        elif c == 1:
            candidate, _ = self.train(name, [f"init_from={self.current}", f"data.until={t_mid}",
                                             f"trainer.max_epochs={cfg.first_retrain_epochs}"])
        else:
            candidate, _ = self.train(name, ["experiment=retrain", f"init_from={self.current}",
                                             f"data.since={self._window_start}", f"data.until={t_mid}"])
        train_seconds = time.perf_counter() - t0
        self._window_start = t_start
        gate = evaluate(candidate, self.current, service.events, since=t_mid, margin=cfg.margin,
                        max_users=None, organic_only=True)
        self._challenger_accepted = gate.accepted
        write_report(gate, self.deploy / "gate-reports" / f"{name}.json")
        if gate.accepted or cfg.ab_refused:
            swaps.append(self.swap(service, self.challenger, candidate, traffic))
        return CycleResult(c, traffic, ab, promoted, name, gate, swaps, train_seconds)

    def _events_since(self, service: Service, t: float) -> pd.DataFrame:
        ev = read_events(service.events)
        return ev[ev["timestamp"] >= t]


HEADER = (f"{'cycle':>5s} {'requests':>8s} {'failed':>6s} {'events':>6s}  "
          f"{'A/B purchase rate: chall. - champ. [95% CI]':44s} {'promoted':>8s}  {'candidate':9s} "
          f"{'gate NDCG@10 diff [95% CI]':30s} {'gate':8s} {'train_s':>7s} {'swap_s':>6s}")


def row(r: CycleResult) -> str:
    if r.ab is not None:
        p = next(x for x in r.ab.comparisons if x.outcome == "purchase")
        champ, chall = r.ab.rates[CHAMPION]["purchase"].value, r.ab.rates[CHALLENGER]["purchase"].value
        ab = (f"{chall:.3f}-{champ:.3f} = {p.difference:+.3f} [{p.ci[0]:+.3f},{p.ci[1]:+.3f}] "
              f"{(p.winner or 'none')[:5]}")
    else:
        ab = "(no challenger)"
    g = r.gate
    gate = f"{g.difference:+.4f} [{g.difference_ci[0]:+.4f},{g.difference_ci[1]:+.4f}]" if g else "-"
    return (f"{r.cycle:5d} {r.traffic.ok + r.traffic.failed:8d} {r.traffic.failed:6d} {r.traffic.events:6d}  {ab:44s} "
            f"{'-' if r.promoted is None else 'yes' if r.promoted else 'no':>8s}  {r.candidate:9s} {gate:30s} "
            f"{('accepted' if g.accepted else 'refused') if g else '-':8s} {r.train_seconds:7.1f} "
            f"{max(r.swaps) if r.swaps else 0.0:6.2f}")
