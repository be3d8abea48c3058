"""The FastAPI application: :func:`create_app` wires the served runs, the ratings store, the guard (API key, body
limit, request metrics), one-line JSON errors, the routes and the page."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import CapabilityError, ConfigError, GenlabError
from genlab.extras import require
from genlab.run import Run
from genlab.serve.config import ServeConfig
from genlab.serve.errors import BodyTooLarge, HTTPError
from genlab.serve.runs import ServedRun
from genlab.serve.store import NotFound, Store, VoteConflict
from genlab.serve.workers import Cancelled, Job, QueueFull, Unavailable

log = logging.getLogger("genlab.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/healthz",)
KEY_COOKIE = "genlab_key"


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        prom = require("prometheus_client", "serve", "genlab serve")
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("genlab_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = prom.Histogram("genlab_request_seconds", "Time to answer a request", ["route"], registry=r,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.calls = prom.Counter("genlab_model_calls", "Model calls (a call may serve a micro-batch)", ["model"],
                                  registry=r)
        self.batch = prom.Histogram("genlab_batch_samples", "Samples per model call", ["model"], registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_jobs = prom.Histogram("genlab_batch_requests", "Requests per model call", ["model"], registry=r,
                                         buckets=(1, 2, 4, 8, 16, 32))
        self.call_seconds = prom.Histogram("genlab_model_call_seconds", "Seconds per model call", ["model"],
                                           registry=r)
        self.samples = prom.Counter("genlab_samples", "Samples generated", ["model"], registry=r)
        self.waiting = prom.Gauge("genlab_queue_waiting", "Requests waiting per model", ["model"], registry=r)
        self.votes = prom.Counter("genlab_votes", "Votes stored (retries not counted)", registry=r)
        self.drift = prom.Gauge("genlab_drift_statistic", "Last drift statistic per model", ["model", "statistic"],
                                registry=r)
        self.drift_threshold = prom.Gauge("genlab_drift_threshold", "Drift threshold", ["model", "statistic"],
                                          registry=r)
        self.drift_alarm = prom.Gauge("genlab_drift_alarm", "1 when the last window raised a drift alarm",
                                      ["model"], registry=r)

    def on_call(self, model: str, samples: int, jobs: int, seconds: float) -> None:
        self.calls.labels(model).inc()
        self.batch.labels(model).observe(samples)
        self.batch_jobs.labels(model).observe(jobs)
        self.call_seconds.labels(model).observe(seconds)
        self.samples.labels(model).inc(samples)

    def on_check(self, model: str, check: Any) -> None:
        for k, v in check.statistics.items():
            self.drift.labels(model, k).set(v)
            if k in check.thresholds:
                self.drift_threshold.labels(model, k).set(check.thresholds[k])
        self.drift_alarm.labels(model).set(1.0 if check.alarm else 0.0)

    def render(self) -> bytes:
        return bytes(self.prom.generate_latest(self.registry))


@dataclass
class ServerState:
    """Everything the routes share."""

    cfg: ServeConfig
    runs: dict[str, ServedRun]
    store: Store
    metrics: Metrics
    rng: random.Random = field(default_factory=random.Random)
    rng_lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.time)
    leaderboard_cache: dict[str, Any] = field(default_factory=dict)

    def run(self, name: Any) -> ServedRun:
        """The served run ``name``.

        Raises:
            HTTPError: 400 without a name, 404 for an unknown one.
        """
        if not isinstance(name, str) or not name:
            raise HTTPError(400, f"give model, one of: {', '.join(self.runs)}")
        if name not in self.runs:
            raise HTTPError(404, f"model {name!r} not found; available: {', '.join(self.runs)}", "not_found_error")
        return self.runs[name]


def _json_error(status: int, message: str, kind: str = "invalid_request_error",
                headers: dict[str, str] | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(HTTPError(status, message, kind).body()).encode()
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, hs, body


LOGIN_PAGE = """<!doctype html><meta charset=utf-8><title>genlab: key needed</title>
<body style="font-family:system-ui;margin:3rem"><h1>genlab serve</h1><p>This server needs its API key.</p>
<form onsubmit="document.cookie='genlab_key='+encodeURIComponent(k.value)+'; SameSite=Strict; path=/';
location.reload();return false"><input id=k type=password placeholder="API key" autofocus>
<button>Open</button></form></body>"""


class Guard:
    """ASGI middleware: the bearer key (or the page's same-site cookie), the body limit, request metrics."""

    def __init__(self, app: ASGIApp, cfg: ServeConfig, metrics: Metrics) -> None:
        self.app, self.cfg, self.metrics = app, cfg, metrics
        self._key = cfg.api_key.encode() if cfg.api_key else None

    def _authorized(self, scope: Scope) -> bool:
        if self._key is None:
            return True
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self._key):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == KEY_COOKIE.encode():
                from urllib.parse import unquote_to_bytes

                if hmac.compare_digest(unquote_to_bytes(value), self._key):
                    return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status_box = [500]
        path = scope.get("path", "")

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = int(message["status"])
            await send(message)

        async def answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
            await send_wrapped({"type": "http.response.start", "status": status, "headers": headers})
            await send_wrapped({"type": "http.response.body", "body": body})

        try:
            if path not in OPEN_PATHS and not self._authorized(scope):
                if path == "/" and scope.get("method") == "GET":
                    body = LOGIN_PAGE.encode()
                    await answer(401, [(b"content-type", b"text/html; charset=utf-8"),
                                       (b"www-authenticate", b"Bearer")], body)
                else:
                    await answer(*_json_error(401, "missing or wrong API key; send Authorization: Bearer <key>",
                                              "authentication_error", {"WWW-Authenticate": "Bearer"}))
                return
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            limit = self.cfg.max_body
            if length is not None:
                try:
                    too_big = int(length) > limit
                except ValueError:
                    await answer(*_json_error(400, "bad Content-Length header"))
                    return
                if too_big:
                    await answer(*_json_error(413, f"request body of {int(length)} bytes is over the limit of "
                                              f"{limit} bytes"))
                    return
            seen = [0]

            async def receive_limited() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
                return message

            await self.app(scope, receive_limited, send_wrapped)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("/static" if path.startswith("/static/") else "other")
            self.metrics.requests.labels(name, str(status_box[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - t0)


async def read_json(request: Any) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        HTTPError: 400 for a body that is not a JSON object.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"malformed JSON body ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(body, dict):
        raise HTTPError(400, f"the JSON body must be an object, got {type(body).__name__}")
    return body


async def wait_job(request: Any, job: Job, timeout: float) -> Any:
    """Await a job's result; cancel it when the client disconnects or the timeout passes.

    Raises:
        HTTPError: 504 on timeout, 499 when the client went away.
    """
    fut = asyncio.wrap_future(job.future)
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            job.cancel()
            raise HTTPError(504, f"the request took longer than the server's timeout of {timeout:.0f} s",
                            "timeout_error")
        done, _ = await asyncio.wait({fut}, timeout=min(0.25, left))
        if done:
            return fut.result()
        if await request.is_disconnected():
            job.cancel()
            raise HTTPError(499, "client closed the request", "cancelled")


def to_http(e: BaseException) -> HTTPError:
    """The answer for an exception raised while serving."""
    if isinstance(e, HTTPError):
        return e
    if isinstance(e, QueueFull):
        return HTTPError(429, str(e), "rate_limit_error", {"Retry-After": str(int(e.retry_after))})
    if isinstance(e, Unavailable):
        return HTTPError(503, str(e), "unavailable", {"Retry-After": str(int(e.retry_after))})
    if isinstance(e, Cancelled):
        return HTTPError(504, f"the request was cancelled ({e})", "timeout_error")
    if isinstance(e, BodyTooLarge):
        return HTTPError(413, str(e))
    if isinstance(e, NotFound):
        return HTTPError(404, str(e), "not_found_error")
    if isinstance(e, VoteConflict):
        return HTTPError(409, str(e), "conflict")
    if isinstance(e, CapabilityError | ConfigError | GenlabError):
        return HTTPError(400, str(e))
    log.exception("internal error", exc_info=e)
    first = str(e).splitlines()[0] if str(e) else ""
    return HTTPError(500, f"internal error: {type(e).__name__}: {first}", "server_error")


def unique_names(paths: list[str]) -> dict[str, str]:
    """``name → path`` for run arguments: ``NAME=PATH`` or a path named after its folder (``vae``, ``vae-2``, …).

    Raises:
        ConfigError: for a bad or repeated name.
    """
    out: dict[str, str] = {}
    for arg in paths:
        name, sep, path = arg.partition("=")
        if not sep:
            name, path = Path(arg.rstrip("/")).name or "run", arg
            base, k = name, 2
            while name in out:
                name, k = f"{base}-{k}", k + 1
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
            raise ConfigError(f"bad model name {name!r}: use letters, digits, '.', '_' or '-'")
        if name in out:
            raise ConfigError(f"model name {name!r} is given twice")
        out[name] = path
    return out


def create_app(runs: Mapping[str, Run | str | Path] | list[str], config: ServeConfig | None = None,
               store: Store | None = None) -> Any:
    """The server as an ASGI app (FastAPI), ready for uvicorn or a test client.

    Arguments:
        runs: ``name → run or run folder``, or run arguments (``PATH`` or ``NAME=PATH``).
        config: the server's options (default :class:`ServeConfig`).
        store: a ratings store (default: opened from ``config.db``).

    Raises:
        ExtraMissing: without the ``serve`` extra; ConfigError/CheckpointError for bad runs or options.
    """
    require("fastapi", "serve", "genlab serve")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from genlab import api

    cfg = config or ServeConfig()
    named = unique_names(list(runs)) if isinstance(runs, list) else dict(runs)
    if not named:
        raise ConfigError("give at least one run folder to serve")
    metrics = Metrics()
    db = store or Store(cfg.db)  # a bad --db stops before any model is loaded
    served: dict[str, ServedRun] = {}
    try:
        for name, src in named.items():
            run = src if isinstance(src, Run) else api.load(src, device=cfg.device)
            served[name] = ServedRun(name, run, cfg, metrics.on_call, metrics.on_check)
            metrics.waiting.labels(name).set_function(lambda s=served[name]: s.worker.waiting)
    except BaseException:
        for s in served.values():
            s.stop()
        if store is None:
            db.close()
        raise
    state = ServerState(cfg, served, db, metrics, random.Random(cfg.seed))

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        start_background(state)
        yield
        stop(state)

    app = FastAPI(title="genlab", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.genlab = state

    async def _error(request: Request, exc: Exception) -> JSONResponse:
        e = to_http(exc)
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    for cls in (HTTPError, GenlabError, QueueFull, Unavailable, Cancelled, BodyTooLarge, NotFound, VoteConflict,
                Exception):  # Exception last: an unexpected error is still one line of JSON (500), and logged
        app.add_exception_handler(cls, _error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        e = HTTPError(400, f"{where}: {first.get('msg', 'invalid request')}")
        return JSONResponse(e.body(), status_code=400)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        e = HTTPError(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else
                      "invalid_request_error")
        return JSONResponse(e.body(), status_code=exc.status_code)

    from genlab.serve import arena, routes

    routes.add_routes(app, state)
    arena.add_routes(app, state)
    return Guard(app, cfg, metrics)


def start_background(state: ServerState) -> None:
    """Start what runs beside the requests: gold examples and drift references."""
    for s in state.runs.values():
        if state.cfg.gold_rate > 0:
            threading.Thread(target=s.load_gold, name=f"genlab-gold-{s.name}", daemon=True).start()
        s.start_reference()


def stop(state: ServerState) -> None:
    """Stop every worker and monitor and close the store."""
    for s in state.runs.values():
        s.stop()
    state.store.close()


def app_state(app: Any) -> ServerState:
    """The :class:`ServerState` of an app :func:`create_app` made."""
    inner: Any = app.app if isinstance(app, Guard) else app
    return inner.state.genlab
