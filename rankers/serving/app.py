"""The REST service: FastAPI over exported models, with hot swaps and an A/B challenger.

    POST /recommend  {"user_id"?, "features"?, "k", "exclude"?} -> items, scores, model_version, variant, fallback
    POST /score      {"user_id"?, "features"?, "items"}         -> scores, model_version, variant
    POST /events     {"user_id", "item_id", "event", "variant"?, "timestamp"?, "model_version"?}
    GET  /health, GET /model, GET /metrics (Prometheus text), GET /docs (OpenAPI)

``create_app(settings)`` loads the models before it returns (a bad export is an error at
startup, not at the first request); ``serve(cfg)`` runs it under uvicorn. With
``isolation="process"`` (the default) each model runs in a worker process
(``rankers.serving.worker``), so loading a new one never stalls this process; "thread"
keeps models in this process (tests, tiny catalogues). Handlers are ``async`` and await the
worker's answer on the event loop, so this process parses and answers other requests while
a model computes. Each handler reads a slot's model once, which is what lets a swap happen
under load without failing requests (see ``rankers.serving.model``).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from typing import Annotated, Dict, List, Literal, Optional, Union

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, StringConstraints

from rankers.serving.ab import CHALLENGER, CHAMPION, assign_variant
from rankers.serving.events import EventLog
from rankers.serving.impressions import ImpressionLog
from rankers.serving.metrics import CONTENT_TYPE, ServingMetrics
from rankers.serving.config import ServeSettings
from rankers.serving.model import ModelInfo, ModelLoadError, ModelSlot, RequestError, Watcher, load_model
from rankers.serving.worker import WorkerGone, remove_orphan_snapshots, start_worker

log = logging.getLogger(__name__)

MAX_LIST = 10_000  # longest exclude / items / feature value list one request may send
NO_VARIANT = "none"  # metrics label of requests rejected before a variant was chosen


def _utf8(s: str) -> str:
    # JSON's "\ud800" is a Python str that no UTF-8 output (log, pipe, response) can carry
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate such as \\ud800)") from None
    return s


def _not_a_formula(s: str) -> str:
    # /events writes ids into a CSV file: a cell a spreadsheet would run as a formula is refused
    # (numbers such as -1 or +49 stay ids)
    if s[:1] in ("=", "@") or (s[:1] in ("+", "-") and not s[1:2].isdigit() and s[1:2] != "."):
        raise ValueError("starts like a spreadsheet formula (=, @, or + or - not followed by a digit)")
    return s


Text = Annotated[StrictStr, AfterValidator(_utf8)]
# blanks around an id are not part of it (rankers.data.ids: the readers strip them too)
Id = Annotated[Text, AfterValidator(str.strip), StringConstraints(min_length=1, max_length=512,
                                                                  pattern=r"^[^\x00-\x1f\x7f]*$")]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]  # JSON NaN, Infinity and 1e400 are refused
FeatureValue = Union[Text, StrictInt, FiniteFloat]
Features = Dict[Annotated[Text, StringConstraints(min_length=1, max_length=512)],
                Annotated[List[FeatureValue], Field(max_length=MAX_LIST)]]
LoggedId = Annotated[Id, AfterValidator(_not_a_formula)]


class _Strict(BaseModel):
    # Unknown fields and type coercions ("5" for 5) are client bugs: reject them with 422.
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(_Strict):
    user_id: Optional[Id] = Field(None, description="a known user id; unknown ids fall back to features")
    features: Features = Field(default_factory=dict, description="user feature name -> values; 'history' "
                               "takes item ids and replaces the stored history")
    k: StrictInt = Field(..., ge=1, description="number of items, 1 .. catalogue size")
    exclude: List[Id] = Field(default_factory=list, max_length=MAX_LIST, description="item ids never returned")


class RecommendResponse(BaseModel):
    request_id: str = Field(..., description="this response's id: the impression log's key; send it with "
                                             "/events to join a click or a purchase to what was shown")
    items: List[str]
    scores: List[float]
    model_version: str
    variant: str
    fallback: Optional[Literal["anonymous"]] = Field(
        None, description="'anonymous' when the user was neither known nor described by features: the "
                          "ranking the model gives a user it knows nothing about")


class ScoreRequest(_Strict):
    user_id: Optional[Id] = None
    features: Features = Field(default_factory=dict)
    items: List[Id] = Field(..., min_length=1, max_length=MAX_LIST)


class ScoreResponse(BaseModel):
    scores: List[float]
    model_version: str
    variant: str
    fallback: Optional[Literal["anonymous"]] = None


class RerankRequest(_Strict):
    user_id: Optional[Id] = None
    features: Features = Field(default_factory=dict, description="user features, and a two-stage model's "
                               "context columns (one value for the whole list)")
    candidates: List[Id] = Field(..., min_length=1, max_length=MAX_LIST, description="the item ids to order")
    candidate_features: Features = Field(default_factory=dict, description="a two-stage model's column -> one "
                                         "value per candidate (the item's own columns come from the export)")


class RerankResponse(BaseModel):
    request_id: str = Field(..., description="as /recommend's: the impression log's key")
    items: List[str]
    scores: List[float]
    model_version: str
    variant: str
    fallback: Optional[Literal["anonymous"]] = None


class EventRequest(_Strict):
    user_id: LoggedId
    item_id: LoggedId
    event: Literal["view", "cart", "purchase"]
    variant: Optional[Literal["champion", "challenger"]] = Field(
        None, description="the variant that served the recommendation; default: the user's assignment")
    timestamp: Optional[Union[FiniteFloat, StrictInt]] = Field(None, description="unix seconds; default: now")
    model_version: Optional[Annotated[LoggedId, StringConstraints(max_length=256)]] = None
    request_id: Optional[Annotated[LoggedId, StringConstraints(max_length=64)]] = Field(
        None, description="the request_id of the /recommend response the event follows")


def model_loader(settings: ServeSettings):
    """path -> model: a worker process per model, or a model in this process."""
    if settings.isolation == "process":
        remove_orphan_snapshots()  # those of services on this host that were killed
        return functools.partial(start_worker, num_threads=int(settings.num_threads or 0),
                                 jit_optimize=bool(settings.jit_optimize), spare=bool(settings.spare_worker))
    return load_model


class Service:
    """The state behind the handlers: model slots, A/B split, metrics, event log."""

    def __init__(self, settings: ServeSettings, metrics: ServingMetrics, loader=None):
        self.settings = settings
        self.events = EventLog(settings.events_path) if settings.events_path else None  # before the slow part
        self.impressions = ImpressionLog(settings.impressions_path, settings.impressions_max_bytes) \
            if settings.impressions_path else None
        loader = loader or model_loader(settings)
        self.metrics = metrics
        with torch.jit.optimized_execution(settings.jit_optimize):  # the flag is per thread
            self.slots: Dict[str, ModelSlot] = {
                CHAMPION: ModelSlot(CHAMPION, settings.model_path, loader, metrics.on_swap)}
            if settings.challenger_path:
                self.slots[CHALLENGER] = ModelSlot(CHALLENGER, settings.challenger_path, loader, metrics.on_swap)
        self.watcher = Watcher(list(self.slots.values()), settings.poll_interval_s, settings.jit_optimize)

    async def call(self, variant: str, fn):
        """``await fn(model)`` on the variant's current model; once more on the new one if that
        model's process went away in between (a swap retires it, a crash loses it)."""
        for attempt in (0, 1):
            model = self.slots[variant].current  # read once: a swap does not touch this call
            try:
                return model, await fn(model)
            except WorkerGone as e:
                if attempt == 1:
                    log.error("%s: %s", variant, e)
                    raise HTTPException(503, "the model is being reloaded; retry") from None
                # its process died: start another on the same export now, then retry once
                await asyncio.to_thread(self.slots[variant].recover, model)
            except HTTPException:
                raise
            except Exception as e:
                raise _model_error(e) from None

    def close(self) -> None:
        self.watcher.stop()
        for slot in self.slots.values():
            slot.close()
        if self.impressions is not None:
            self.impressions.close()  # what is queued is written

    def variant_for(self, user_id: Optional[str]) -> str:
        if CHALLENGER not in self.slots:
            return CHAMPION
        return assign_variant(user_id, float(self.settings.challenger_share), self.settings.ab_salt)

    def log_impressions(self, user_id: Optional[str], variant: str, model: ModelInfo, items: List[str],
                        scores: List[float]) -> str:
        """A new request id, and what was shown under it queued for the impression log (a queue
        put: no I/O on the request's path)."""
        request_id = uuid.uuid4().hex
        if self.impressions is not None:
            if self.impressions.log(request_id, user_id, variant, model.version, items, scores):
                self.metrics.impressions.labels(variant).inc()
            else:
                self.metrics.impressions_dropped.inc()
        return request_id

    def resolve(self, model: ModelInfo, user_id: Optional[str], raw: Dict[str, list]):
        """-> (user id for the model, features as strings, fallback flag); HTTPException 422 when
        the request says nothing about its user and the anonymous fallback is off. The model
        itself checks the features (names, values)."""
        features = {name: [v if isinstance(v, str) else repr(v) for v in values] for name, values in raw.items()}
        known = user_id is not None and user_id in model.known_users
        if known or any(features.values()):
            return user_id or "", features, None
        if not self.settings.anonymous_fallback:
            who = f"user_id {user_id!r} is not known to model {model.version}" if user_id else "no user_id"
            raise HTTPException(422, f"{who} and no features were given: send user features "
                                     f"({sorted(model.features)} or 'history') or a known user_id")
        return user_id or "", features, "anonymous"


def _model_error(e: Exception) -> HTTPException:
    """A model exception -> 422 for a request the model refused (RequestError), else 500."""
    if isinstance(e, RequestError):
        return HTTPException(422, str(e))
    log.error("model call failed: %s: %s", type(e).__name__, e)
    return HTTPException(500, "internal error in the model call")


class _MetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by route, variant and status."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"  # raw paths would explode label counts
            variant = scope.get("state", {}).get("variant", NO_VARIANT)
            self.metrics.observe(endpoint, variant, status, time.perf_counter() - start)


class _BodyLimit:
    """Pure ASGI middleware: a body over ``max_bytes`` is answered 413 without being read past
    the limit: by its Content-Length, or, for a body without one (chunked), read here up to the
    limit and handed on whole (memory bounded by the limit)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                return await self._refuse(send)
            return await self.app(scope, receive, send)  # the server holds the body to its length
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def buffered():
            return next(replay, None) or await receive()

        await self.app(scope, buffered, send)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes (the service's max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: ServeSettings, loader=None) -> FastAPI:
    """The FastAPI app; models are loaded here, the swap watcher runs while the app is up."""
    metrics = ServingMetrics()
    svc = Service(settings, metrics, loader)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Entered in the event loop's thread, where the handlers call the models.
        with torch.jit.optimized_execution(settings.jit_optimize):
            if settings.watch:
                svc.watcher.start()
            try:
                yield
            finally:
                svc.close()

    app = FastAPI(title="rankers", version="1", lifespan=lifespan,
                  description="Recommendations from exported rankers models (see README.md, section Serving).")
    app.state.service = svc
    app.add_middleware(_BodyLimit, max_bytes=int(settings.max_body_bytes))
    app.add_middleware(_MetricsMiddleware, metrics=metrics)  # added last: outermost, counts the 413s too

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "malformed JSON body: " + "; ".join(
                str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)}, status_code=400)
        # where and what, never the input itself: it may be 20 MB, or NaN or a lone surrogate,
        # which no JSON response can carry
        return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                                         "type": e.get("type", "")} for e in errors]}, status_code=422)

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(req: RecommendRequest, request: Request):
        variant = svc.variant_for(req.user_id)
        request.state.variant = variant

        async def run(model):
            if req.k > model.n_items:
                raise HTTPException(422, f"k={req.k} is above the catalogue size {model.n_items}")
            user, features, fallback = svc.resolve(model, req.user_id, req.features)
            return await model.recommend_async(user, features, req.k, req.exclude), fallback

        model, ((items, scores), fallback) = await svc.call(variant, run)
        return {"request_id": svc.log_impressions(req.user_id, variant, model, items, scores), "items": items,
                "scores": scores, "model_version": model.version, "variant": variant, "fallback": fallback}

    @app.post("/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest, request: Request):
        variant = svc.variant_for(req.user_id)
        request.state.variant = variant

        async def run(model):
            user, features, fallback = svc.resolve(model, req.user_id, req.features)
            return await model.score_async(user, features, req.items), fallback

        model, (scores, fallback) = await svc.call(variant, run)
        return {"scores": scores, "model_version": model.version, "variant": variant, "fallback": fallback}

    @app.post("/rerank", response_model=RerankResponse)
    async def rerank(req: RerankRequest, request: Request):
        """The candidates in the model's order: a two-stage export's reranker with the list's
        features, a two-tower export's scores (it takes no candidate features)."""
        variant = svc.variant_for(req.user_id)
        request.state.variant = variant
        columns = {name: [v if isinstance(v, str) else repr(v) for v in values]
                   for name, values in req.candidate_features.items()}

        async def run(model):
            user, features, fallback = svc.resolve(model, req.user_id, req.features)
            if not features and columns and fallback == "anonymous":
                fallback = None  # the candidates' features describe the list
            return await model.rerank_async(user, features, req.candidates, columns), fallback

        model, ((items, scores), fallback) = await svc.call(variant, run)
        return {"request_id": svc.log_impressions(req.user_id, variant, model, items, scores), "items": items,
                "scores": scores, "model_version": model.version, "variant": variant, "fallback": fallback}

    @app.post("/events")
    async def events(req: EventRequest, request: Request):
        if svc.events is None:
            raise HTTPException(503, "event logging is off: start the service with events_path=FILE")
        variant = req.variant or svc.variant_for(req.user_id)
        if variant not in svc.slots:
            raise HTTPException(422, f"variant {variant!r} is not served (no challenger_path)")
        request.state.variant = variant
        version = req.model_version or svc.slots[variant].current.version
        ts = time.time() if req.timestamp is None else float(req.timestamp)  # finite: FiniteFloat, StrictInt
        try:
            svc.events.append(req.user_id, req.item_id, req.event, ts, variant, version, req.request_id)
        except OSError as e:  # the file was replaced by a directory, the disk is full, ...
            log.error("event log %s: %s", svc.events.path, e)
            raise HTTPException(503, f"the event log cannot be written ({e.strerror}); the event was not "
                                     "logged") from None
        metrics.events.labels(variant, req.event).inc()
        return {"status": "logged", "variant": variant}

    @app.get("/health")
    async def health():
        # degraded (503) while a variant has no live model process: its requests would fail
        variants = {v: s.status() for v, s in svc.slots.items()}
        ok = all(st["alive"] for st in variants.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "variants": variants},
                            status_code=200 if ok else 503)

    @app.get("/model")
    async def model_info():
        out = svc.slots[CHAMPION].current.describe()
        ch = svc.slots.get(CHALLENGER)
        out["challenger"] = ch.current.describe() if ch else None
        out["challenger_share"] = float(settings.challenger_share) if ch else 0.0
        return out

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


def serve(cfg) -> None:
    """Run the service under uvicorn (blocking) from ServeSettings or a config composed over them
    (rankers/conf/serve.yaml)."""
    import uvicorn

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        settings = cfg if isinstance(cfg, ServeSettings) else ServeSettings.from_config(cfg)
        app = create_app(settings)
    except (ModelLoadError, ValueError) as e:
        raise SystemExit(f"cannot start the service: {e}") from None
    uvicorn.run(app, host=settings.host, port=int(settings.port), log_level=settings.log_level,
                access_log=bool(settings.access_log))
