"""Loading, validating and hot-swapping exported models (``model.ts`` + ``metadata.json``).

A ``ModelSlot`` serves one variant. It holds the current model (a ``LoadedModel`` here,
or a ``rankers.serving.worker.WorkerModel`` in its own process) and replaces it whole when
its ``model_path`` (an export directory or a symlink to one) starts pointing at a
different export: the new model is loaded and validated off the request path (a
background ``Watcher`` thread), then swapped in with one attribute assignment. A request
reads ``slot.current`` once and uses that object to the end, so requests in flight finish
on the old model. An export that fails to load or validate is refused and logged; the old
model keeps serving and the same export is not retried until the path changes again.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import torch

from rankers.artifact.schema import FORMAT, TWO_STAGE_FORMAT

log = logging.getLogger(__name__)

Fingerprint = Tuple[str, int, int, int]


class ModelLoadError(Exception):
    """An export that cannot be served: missing files, wrong format, failed checks."""


class RequestError(ValueError):
    """The model refused the request (unknown feature, bad value, unknown item, ...): a client
    error, answered 422. Anything else a model raises is its own fault."""


def as_request_error(e: BaseException) -> Optional[RequestError]:
    """The RequestError ``e`` stands for, or None when ``e`` is not about the request.

    model.ts raises ``ValueError`` for requests it cannot serve and for nothing else (see
    rankers.artifact.runtime); across TorchScript that arrives as ``torch.jit.Error`` (the
    type of every ``raise`` in scripted code), with the message as its last line."""
    if isinstance(e, RequestError):
        return e
    if isinstance(e, (torch.jit.Error, ValueError)):
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return RequestError(last.split("builtins.ValueError: ", 1)[-1].strip())
    return None


def repoint(link: Union[str, Path], target: Union[str, Path]) -> None:
    """Deploy: atomically make symlink ``link`` point at the export ``target`` (a new link,
    renamed over the old one, so there is no moment without a model)."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    os.symlink(os.path.abspath(target), tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        os.unlink(tmp)
        raise


def fingerprint(path: Union[str, Path]) -> Fingerprint:
    """Identity of the export ``path`` points at now: (real path, dir inode, metadata inode, mtime).

    Changes when a symlink is repointed and when a directory is replaced in place (as
    ``rankers.artifact.writer.export`` does). Raises ModelLoadError when there is nothing to load.
    """
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        meta = os.stat(os.path.join(real, "metadata.json"))
    except OSError as e:
        raise ModelLoadError(f"{path} (-> {real}) is not an export directory: {e.strerror}: {e.filename}") from e
    return real, st.st_ino, meta.st_ino, meta.st_mtime_ns


@dataclass(eq=False)
class ModelInfo:
    """What the service knows about one loaded export, wherever the model runs.

    Attributes:
        meta: metadata.json. path: the export directory it was loaded from (symlinks resolved).
        fingerprint: ``fingerprint(path)`` when it was loaded. loaded_at: unix seconds.
        n_items: catalogue size. known_users: user ids with a stored bag (the fallback check).
        features: user feature name -> kind (categorical | multi | numeric), for messages.
    """

    meta: dict
    path: str
    fingerprint: Fingerprint
    loaded_at: float
    n_items: int
    known_users: FrozenSet[str]
    features: Dict[str, str]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def two_stage(self) -> bool:
        """A two-stage export: the retriever's top candidates reranked (rankers.artifact.two_stage)."""
        return self.meta.get("format") == TWO_STAGE_FORMAT

    def info(self) -> "ModelInfo":
        """The plain-data part (picklable: what a worker process reports)."""
        return ModelInfo(self.meta, self.path, self.fingerprint, self.loaded_at, self.n_items, self.known_users,
                         self.features)

    def describe(self) -> dict:
        """version, created, metrics (metadata.json) plus where and when it was loaded."""
        return {"version": self.version, "created": self.meta.get("created"), "metrics": self.meta.get("metrics", {}),
                "n_items": self.n_items, "n_known_users": len(self.known_users), "path": self.path,
                "loaded_at": self.loaded_at}


@dataclass(eq=False)
class LoadedModel(ModelInfo):
    """An export loaded in this process. A swap replaces the whole object, never its fields.
    module: the TorchScript Recommender (``recommend``, ``score``, ``version``)."""

    module: torch.jit.ScriptModule = None

    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: Sequence[str]) -> Tuple[List[str], List[float]]:
        return self._call(self.module.recommend, user_id, features, k, list(exclude))

    def score(self, user_id: str, features: Dict[str, List[str]], items: Sequence[str]) -> List[float]:
        return self._call(self.module.score, user_id, features, list(items))

    def rerank(self, user_id: str, features: Dict[str, List[str]], candidates: Sequence[str],
               candidate_features: Dict[str, List[str]]) -> Tuple[List[str], List[float]]:
        return self._call(self.module.rerank, user_id, features, list(candidates), candidate_features)

    @staticmethod
    def _call(method, *args):
        try:
            return method(*args)
        except Exception as e:
            bad = as_request_error(e)
            if bad is not None:
                raise bad from None
            raise

    # The service awaits these. In this process a call is CPU work under our own interpreter:
    # it runs inline (a thread hand-off would add latency and still contend for the GIL).
    async def recommend_async(self, user_id: str, features: Dict[str, List[str]], k: int,
                              exclude: Sequence[str]) -> Tuple[List[str], List[float]]:
        return self.recommend(user_id, features, k, exclude)

    async def score_async(self, user_id: str, features: Dict[str, List[str]], items: Sequence[str]) -> List[float]:
        return self.score(user_id, features, items)

    async def rerank_async(self, user_id: str, features: Dict[str, List[str]], candidates: Sequence[str],
                           candidate_features: Dict[str, List[str]]) -> Tuple[List[str], List[float]]:
        return self.rerank(user_id, features, candidates, candidate_features)

    def alive(self) -> bool:
        return True

    @property
    def pid(self) -> int:
        """The process the model runs in (this one)."""
        return os.getpid()

    def close(self) -> None:
        """Nothing to release: the module goes when the last request holding it ends."""


def load_model(path: Union[str, Path], warmup: int = 3) -> LoadedModel:
    """Load and validate the export at ``path``; ModelLoadError says what is wrong.

    Checks: metadata format, model.ts loads, its version matches metadata.json (a mismatch
    means the directory was replaced while loading), the catalogue size agrees, and a probe
    ``recommend`` returns finite, sorted scores that ``score`` reproduces. ``warmup`` extra
    calls per path let TorchScript's executor settle (compile its plan) before the first request.
    """
    fp = fingerprint(path)
    real = Path(fp[0])
    try:
        meta = json.loads((real / "metadata.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{real}/metadata.json: cannot read: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, TWO_STAGE_FORMAT):
        raise ModelLoadError(f"{real}/metadata.json: format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {FORMAT!r} or {TWO_STAGE_FORMAT!r}")
    try:
        module = torch.jit.load(str(real / "model.ts"), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError or ValueError with a long trace
        raise ModelLoadError(f"{real}/model.ts: cannot load: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    try:
        version = module.version
        core = module.retriever if meta["format"] == TWO_STAGE_FORMAT else module  # the two-tower model
        n_items = int(core.item_bias.shape[0])  # not len(item_ids): that copies every id under the GIL
        known_users = frozenset(core.users.user_index.keys())
        kinds = dict(core.users.tokenizer.kinds)
    except AttributeError as e:
        raise ModelLoadError(f"{real}/model.ts is not a rankers Recommender: {e}") from e
    if version != meta.get("version"):
        raise ModelLoadError(f"{real}: model.ts version {version!r} != metadata.json version {meta.get('version')!r} "
                             "(replaced while loading?)")
    if n_items != meta.get("n_items") or n_items == 0:
        raise ModelLoadError(f"{real}: model.ts has {n_items} items, metadata.json says {meta.get('n_items')}")
    model = LoadedModel(meta, str(real), fp, time.time(), n_items, known_users, kinds, module=module)
    _probe(model, warmup)
    if fingerprint(path) != fp:
        raise ModelLoadError(f"{path} changed while loading; will load the new export")
    return model


def _probe(model: LoadedModel, warmup: int) -> None:
    k = min(10, model.n_items)
    probes = [("", {})]  # the unknown-user path
    if model.known_users:
        probes.append((next(iter(model.known_users)), {}))
    try:
        for user, feats in probes:
            for _ in range(1 + max(0, warmup)):
                ids, scores = model.recommend(user, feats, k, [])
            if len(ids) != k or len(scores) != k:
                raise ModelLoadError(f"{model.path}: probe recommend returned {len(ids)} items, expected {k}")
            if not all(math.isfinite(s) for s in scores) or any(a < b for a, b in zip(scores, scores[1:])):
                raise ModelLoadError(f"{model.path}: probe scores are not finite and sorted: {scores}")
            for _ in range(1 + max(0, warmup)):
                again = model.score(user, feats, ids)
            # a two-stage score depends on the list it scales within: k items are not recommend's m
            if not model.two_stage and any(abs(a - b) > 1e-4 * max(1.0, abs(a)) for a, b in zip(again, scores)):
                raise ModelLoadError(f"{model.path}: score disagrees with recommend: {again} vs {scores}")
            if not all(math.isfinite(s) for s in again):
                raise ModelLoadError(f"{model.path}: probe score is not finite: {again}")
    except ModelLoadError:
        raise
    except Exception as e:  # a model that raises on a plain request cannot serve
        raise ModelLoadError(f"{model.path}: probe request failed: {str(e).strip().splitlines()[-1]}") from e


class ModelSlot:
    """The model behind one variant, swapped when its path points at a new export.

    ``loader(path)`` returns a model (a ``LoadedModel``, or a ``WorkerModel`` running in its
    own process) or raises ModelLoadError. ``on_swap(variant, result, model_or_None)`` is
    called after each load, result "ok" or "refused" (for metrics). A replaced model is
    closed ``grace_s`` seconds later, long after the requests that held it have ended.
    """

    def __init__(self, variant: str, path: Union[str, Path], loader: Callable[[str], LoadedModel] = load_model,
                 on_swap: Optional[Callable[[str, str, Optional[ModelInfo]], None]] = None, grace_s: float = 10.0):
        self.variant = variant
        self.path = str(path)
        self._loader = loader
        self._on_swap = on_swap
        self.grace_s = grace_s
        self._lock = threading.Lock()  # one load at a time per slot
        self.current = loader(self.path)  # startup: an error here is fatal, raise it
        self.swaps = 0
        self.refused = 0
        self.revived = 0  # dead model processes replaced
        self.last_error: Optional[str] = None
        self._refused_fp: Optional[Fingerprint] = None
        self._retired: List[Tuple[float, object]] = []
        if on_swap:
            on_swap(variant, "ok", self.current)

    def check(self) -> bool:
        """Load the export at ``path`` if it changed; replace the current model if its process
        died (``recover``). Returns True when a new model was swapped in."""
        with self._lock:
            self._close_retired(time.monotonic() - self.grace_s)
            if not self.current.alive() and self._revive():
                return True
            try:
                fp = fingerprint(self.path)
            except ModelLoadError as e:
                if self.last_error != str(e):
                    log.error("%s: %s; still serving %s", self.variant, e, self.current.version)
                self.last_error = str(e)
                return False
            alive = self.current.alive()
            if alive and (fp == self.current.fingerprint or fp == self._refused_fp):
                return False
            if not alive:
                log.error("%s: the model process of %s is gone and cannot be started again; loading %s",
                          self.variant, self.current.version, self.path)
            try:
                new = self._loader(self.path)
            except ModelLoadError as e:
                self._refused_fp = fp
                self.refused += 1
                self.last_error = str(e)
                log.error("%s: refused new export: %s; still serving %s", self.variant, e, self.current.version)
                if self._on_swap:
                    self._on_swap(self.variant, "refused", None)
                return False
            old, self.current = self.current, new  # the swap: requests already holding `old` keep it
            self._retired.append((time.monotonic(), old))
            self.swaps += 1
            self.last_error = None
            self._refused_fp = None
            log.info("%s: swapped %s -> %s (%s)", self.variant, old.version, new.version, new.path)
            if self._on_swap:
                self._on_swap(self.variant, "ok", new)
            return True

    def recover(self, dead) -> None:
        """A request found the process of ``dead`` gone: replace it now rather than at the
        watcher's next poll (callers that come later find it done). Blocking: call it off the
        event loop."""
        with self._lock:
            if self.current is dead and not dead.alive() and not self._revive():
                log.error("%s: the model process of %s is gone; the watcher will load %s", self.variant,
                          dead.version, self.path)

    def _revive(self) -> bool:
        """Under the lock: a new process for the current (dead) model, on the same export as
        loaded (``WorkerModel.revive``: the service's snapshot of its files, whatever the
        deployed path holds now). True when it was swapped in."""
        revive = getattr(self.current, "revive", None)
        if revive is None:
            return False
        try:
            new = revive()
        except ModelLoadError as e:
            self.last_error = f"the model process died and could not be started again: {e}"
            log.error("%s: %s", self.variant, self.last_error)
            return False
        old, self.current = self.current, new
        self._retired.append((time.monotonic(), old))
        self.revived += 1
        log.error("%s: the model process of %s died; a new one serves the same export", self.variant, new.version)
        if self._on_swap:
            self._on_swap(self.variant, "revived", new)
        return True

    def _close_retired(self, before: float) -> None:
        keep = []
        for at, model in self._retired:
            if at <= before:
                model.close()
            else:
                keep.append((at, model))
        self._retired = keep

    def close(self) -> None:
        """Close every model of this slot (at shutdown)."""
        with self._lock:
            self._close_retired(float("inf"))
            self.current.close()

    def status(self) -> dict:
        m = self.current
        return {"version": m.version, "path": m.path, "loaded_at": m.loaded_at, "model_path": self.path,
                "alive": m.alive(), "pid": m.pid, "swaps": self.swaps, "refused": self.refused, "revived": self.revived,
                "last_error": self.last_error}


class Watcher:
    """A daemon thread that calls ``slot.check()`` for every slot each ``interval_s`` seconds.
    ``jit_optimize``: TorchScript's executor flag for this thread (it is per thread), under
    which new models are probed and warmed up; use the serving threads' value."""

    def __init__(self, slots: Sequence[ModelSlot], interval_s: float, jit_optimize: bool = True):
        if not interval_s > 0:
            raise ValueError(f"poll interval must be > 0 seconds, got {interval_s}")
        self.slots = list(slots)
        self.interval_s = float(interval_s)
        self.jit_optimize = bool(jit_optimize)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rankers-model-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with torch.jit.optimized_execution(self.jit_optimize):
            while not self._stop.wait(self.interval_s):
                for slot in self.slots:
                    try:
                        slot.check()
                    except Exception:  # never let the watcher die: log and keep serving
                        log.exception("%s: unexpected error while checking %s", slot.variant, slot.path)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
