"""The aiohttp application: thin handlers over ingest → pipeline → spool, plus delivery.

``create_app(config)`` wires one resource per ``cleanup_ctx`` (spool, delivery) so that start
and stop sit together, and stop runs in reverse: delivery drains before the spool closes.
Every request passes the ingest guard first (per-IP rate limit, a deadline for the body, every
error as JSON), and every response leaves with the security headers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import orjson
import structlog
from aiohttp import StreamReader, web

from .. import auth
from ..config import Config
from ..delivery import Delivery
from ..errors import InputError, RequestTimeout, Unauthorized
from ..event import Event, RequestContext, get_path, now_iso
from ..filters import Pipeline
from ..ingest import Limits, decode_beacons, read_body
from ..metrics import CONTENT_TYPE, Metrics, collect_spool
from ..ratelimit import RateLimits
from ..shared import RedisShared
from ..spool import Spool, create_spool

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Router:
    """Everything a request handler needs, built once from the config."""

    config: Config
    metrics: Metrics
    pipeline: Pipeline
    limits: Limits
    rate_limits: RateLimits
    spool: Spool | None = None
    delivery: Delivery | None = None
    shared: RedisShared | None = None  # dedupe and rate limits across instances (Redis spool)
    draining: bool = False
    started_at: float = field(default_factory=time.time)


ROUTER = web.AppKey("router", Router)


def create_app(config: Config, *, spool: Spool | None = None) -> web.Application:
    """The router as an aiohttp app; ``spool`` may be given (tests), else built from config."""
    metrics = Metrics()
    shared = RedisShared.for_spool(config.spool)
    router = Router(config=config, metrics=metrics, limits=Limits.from_server(config.server),
                    rate_limits=RateLimits(config.limits, shared=shared), shared=shared,
                    pipeline=Pipeline(config.pipeline, on_drop=drop_counter(metrics),
                                      shared=shared))
    # aiohttp's own cap is only a backstop: read_body enforces max_body with a clear 413. Its
    # parser must not decompress either: read_body does, under the max_decompressed cap.
    app = web.Application(middlewares=[ingest_guard],
                          client_max_size=config.server.max_body + 1024,
                          handler_args={"auto_decompress": False})
    app[ROUTER] = router
    app.cleanup_ctx.append(_shared_ctx)
    app.cleanup_ctx.append(_spool_ctx(spool))
    app.cleanup_ctx.append(_delivery_ctx)
    app.router.add_post("/beacon", post_beacon)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    from .openapi import add_openapi_route  # GET /openapi.json (docs/openapi.json)
    add_openapi_route(app)
    from .posthog import add_posthog_routes  # imported here: sources imports this module
    add_posthog_routes(app)
    from ..stats import add_stats_routes  # here too: stats reads this module's ROUTER
    add_stats_routes(app)
    from .reload import add_reloader  # and here: reload swaps this module's Router fields
    add_reloader(app)
    if config.admin.listen == "same":  # else server.py serves it on its own listener
        from .admin import add_admin_routes
        add_admin_routes(app)
    return app


def drop_counter(metrics: Metrics) -> Callable[[str, str], None]:
    """The pipeline's drop hook: counts each drop by filter and reason."""
    def count(filter_name: str, reason: str) -> None:
        metrics.dropped.labels("pipeline", filter_name, reason).inc()
    return count


def _spool_ctx(given: Spool | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def spool_ctx(app: web.Application) -> AsyncIterator[None]:
        router = app[ROUTER]
        spool = given or create_spool(router.config.spool)
        await spool.open(list(router.config.enabled_backends))
        router.spool = spool
        try:
            yield
        finally:
            router.draining = True
            await spool.close()
    return spool_ctx


async def _shared_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    shared = app[ROUTER].shared
    if shared is not None:  # closed last: ingest may use it until the spool has closed
        await shared.aclose()


async def _delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    router = app[ROUTER]
    assert router.spool is not None
    router.delivery = Delivery(list(router.config.enabled_backends.values()), router.spool,
                               router.metrics)
    router.delivery.start()
    log.info("router started", backends=sorted(router.delivery.workers),
             filters=len(router.pipeline))
    try:
        yield
    finally:
        router.draining = True
        await router.delivery.stop(router.config.server.shutdown_timeout)


# -- handlers ------------------------------------------------------------------------------------

async def post_beacon(request: web.Request) -> web.Response:
    """Decode, run the global pipeline, make the survivors durable, then (only then) 202."""
    router = request.app[ROUTER]
    started = time.perf_counter()
    try:
        tokens = router.config.sources.beacon.tokens
        if tokens and not auth.matches(auth.bearer(request.headers.get("Authorization")), tokens):
            raise Unauthorized("a source token is required: Authorization: Bearer TOKEN")
        body = await read_body(request, router.limits)
        beacons = decode_beacons(body, request.headers.get("Content-Type"), router.limits)
        metrics = router.metrics
        metrics.child(metrics.received, "beacon").inc(len(beacons))
        # Keyed on the raw id, before the pipeline hashes it; only a salted digest is kept.
        limits = router.rate_limits
        if limits.shared or limits.per_installation is not None:
            field_name = router.config.limits.installation_field
            ids = (get_path(b, field_name) for b in beacons)
            if limits.shared:
                await limits.check_installations_shared(ids)
            else:
                limits.check_installations(ids)
        context = request_context(request)
        received_at = now_iso()
        await make_durable(router, "beacon", (
            Event.new(b, uuid=b.get("uuid"), received_at=received_at, context=context)
            for b in beacons))
    finally:
        router.metrics.child(router.metrics.request_latency, "/beacon").observe(
            time.perf_counter() - started)
    return json_response({"accepted": len(beacons)}, status=202)


async def make_durable(router: Router, source: str, events: Iterable[Event]) -> int:
    """Run the global pipeline on each event and append the survivors to the spool in one
    durable write; returns how many were kept. Raises Unavailable if the spool refuses.

    A request that fails leaves nothing remembered (dedupe): its retry must not be dropped."""
    pipeline = router.pipeline
    events = list(events)
    try:
        if pipeline.batched:  # a filter's state is shared (Redis): one round trip per request
            kept = await pipeline.run(events)
        else:
            kept = [e for e in map(pipeline, events) if e is not None]
        if not kept:
            return 0
        assert router.spool is not None
        await router.spool.append([e.to_json() for e in kept])
    except BaseException:
        for event in events:
            for undo in event.undo or ():
                undo()
        raise
    router.metrics.child(router.metrics.accepted, source).inc(len(kept))
    return len(kept)


def request_context(request: web.Request) -> RequestContext:
    """The request facts filters may use; held in memory only."""
    headers = request.headers
    return RequestContext(dnt=headers.get("DNT") == "1", gpc=headers.get("Sec-GPC") == "1",
                          client_ip=client_ip(request), user_agent=headers.get("User-Agent"))


def client_ip(request: web.Request) -> str | None:
    """The client's address, read through ``limits.trusted_proxies``; memory only, never kept."""
    return request.app[ROUTER].rate_limits.client_ip(request.remote,
                                                     request.headers.get("X-Forwarded-For"))


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the config is loaded, the spool is writable and we are not draining."""
    router = request.app[ROUTER]
    spool_ok = router.spool is not None and await router.spool.writable()
    backends = {}
    if router.delivery is not None:
        for name, worker in router.delivery.workers.items():
            h = worker.health
            backends[name] = {"healthy": h.healthy, "consecutive_failures":
                              h.consecutive_failures, "last_error": h.last_error,
                              "queued": await router.spool.depth(name) if router.spool else None}
    ready = spool_ok and not router.draining
    body = {"status": "ready" if ready else "not_ready", "spool_writable": spool_ok,
            "draining": router.draining, "backends": backends}
    return json_response(body, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    if router.spool is not None and router.delivery is not None:
        await collect_spool(router.metrics, router.spool, list(router.delivery.workers))
    resp = web.Response(body=router.metrics.render())
    resp.content_type = CONTENT_TYPE.split(";")[0]
    return resp


# -- errors --------------------------------------------------------------------------------------

def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def error_response(status: int, error: str, detail: str, retry_after: float | None = None
                   ) -> web.Response:
    # Rounded up: a client that comes back after Retry-After must find a token waiting.
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return json_response({"error": error, "detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error", "detail"}`` JSON (a client's mistake is never a 5xx),
    and every response with the security headers."""
    try:
        return secured(await handler(request))
    except Exception as exc:
        return secured(error_for(request, exc))


def error_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON answer for an exception a handler raised (re-raised if it is a redirect)."""
    if isinstance(exc, InputError):
        request.app[ROUTER].metrics.rejected.labels(_source(request), exc.error).inc()
        return error_response(exc.status, exc.error, exc.detail, exc.retry_after)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise secured(exc)
        error = exc.reason.lower().replace(" ", "_")
        resp = error_response(exc.status, error, exc.text or exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    # (called from an except clause: log.exception finds the traceback there)
    log.exception("unhandled error", path=request.path, method=request.method)
    return error_response(500, "internal_error", "the router failed; see its log")


def _source(request: web.Request) -> str:
    """The ``source`` label of a rejected request: beacon, posthog, or other."""
    from .posthog import SOURCE, V0_PATHS, V1_PATH

    path = request.path.rstrip("/") or "/"
    if path == "/beacon":
        return "beacon"
    return SOURCE if path in V0_PATHS or path == V1_PATH else "other"


# -- ingest protection ---------------------------------------------------------------------------

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # infrastructure's; never rate limited


class _BodyTooSlow(TimeoutError):
    """Put into a request's body stream when its deadline passes.

    A TimeoutError, so that if the handler never read the body, aiohttp's lingering read after
    the response takes it as a timeout and closes the connection quietly.
    """


@web.middleware
async def ingest_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``error_middleware`` and, before a handler reads anything, the per-IP rate limit; while
    it reads, a deadline, so a client that trickles its body (slowloris) gets 408 rather than
    holding a handler.

    The main app's only middleware: each layer costs every request a coroutine and a wrapper
    of aiohttp's, so error handling and the security headers are done here rather than by a
    second middleware and a response signal."""
    try:
        if request.path in PROBES:
            return secured(await handler(request))
        limits = request.app[ROUTER].rate_limits
        if limits.shared:
            await limits.check_client_shared(client_ip(request))
        elif limits.per_ip is not None:
            limits.check_client(client_ip(request))
        stream = request.content
        if stream.is_eof():  # the whole body came with the headers (most beacons): no timer
            return secured(await handler(request))
        timeout = request.app[ROUTER].config.server.request_timeout
        timer = asyncio.get_running_loop().call_later(timeout, _expire_body, stream, timeout)
        try:
            return secured(await handler(request))
        except _BodyTooSlow as exc:
            raise RequestTimeout(str(exc)) from None
        finally:
            timer.cancel()
    except Exception as exc:
        return secured(error_for(request, exc))


def _expire_body(stream: StreamReader, timeout: float) -> None:
    if not stream.is_eof():  # all of it arrived in time: the handler may take as long as it needs
        stream.set_exception(_BodyTooSlow(f"the body did not arrive within {timeout:g}s"))


_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy",
     "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("Cache-Control", "no-store"),
)

R = TypeVar("R", bound=web.StreamResponse)


def secured(response: R) -> R:
    """``response`` with the security headers; a handler's own value (a page's CSP, a public
    page's Cache-Control) is kept. Every response of both apps leaves through a middleware
    that calls this: aiohttp answers a request that matched no route (a malformed one) itself,
    without middlewares or response signals either way."""
    headers = response.headers
    for name, value in _SECURITY_HEADERS:
        if name not in headers:
            headers[name] = value
    headers["Server"] = "beacon-router"  # not aiohttp's default, which names its version
    return response
