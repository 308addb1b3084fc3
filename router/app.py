"""The aiohttp application: thin handlers over ingest → pipeline → spool, plus delivery.

``create_app(config)`` wires one resource per ``cleanup_ctx`` (spool, delivery) so that start
and stop sit together, and stop runs in reverse: delivery drains before the spool closes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import orjson
import structlog
from aiohttp import web

from .config import Config
from .delivery import Delivery
from .errors import InputError
from .event import Event, RequestContext, now_iso
from .filters import Pipeline
from .ingest import Limits, decode_beacons, read_body
from .metrics import CONTENT_TYPE, Metrics
from .spool import Spool, create_spool

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Router:
    """Everything a request handler needs, built once from the config."""

    config: Config
    metrics: Metrics
    pipeline: Pipeline
    limits: Limits
    spool: Spool | None = None
    delivery: Delivery | None = None
    draining: bool = False
    started_at: float = field(default_factory=time.time)


ROUTER = web.AppKey("router", Router)


def create_app(config: Config, *, spool: Spool | None = None) -> web.Application:
    """The router as an aiohttp app; ``spool`` may be given (tests), else built from config."""
    metrics = Metrics()
    router = Router(config=config, metrics=metrics, limits=Limits.from_server(config.server),
                    pipeline=Pipeline(config.pipeline, on_drop=_drop_counter(metrics)))
    # aiohttp's own cap is only a backstop: read_body enforces max_body with a clear 413. Its
    # parser must not decompress either: read_body does, under the max_decompressed cap.
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=config.server.max_body + 1024,
                          handler_args={"auto_decompress": False})
    app[ROUTER] = router
    app.cleanup_ctx.append(_spool_ctx(spool))
    app.cleanup_ctx.append(_delivery_ctx)
    app.router.add_post("/beacon", post_beacon)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    from .sources import add_posthog_routes  # imported here: sources imports this module
    add_posthog_routes(app)
    from .stats import add_stats_routes  # here too: stats reads this module's ROUTER
    add_stats_routes(app)
    return app


def _drop_counter(metrics: Metrics) -> Callable[[str, str], None]:
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


async def _delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    router = app[ROUTER]
    assert router.spool is not None
    router.delivery = Delivery(list(router.config.enabled_backends.values()), router.spool,
                               router.metrics)
    router.delivery.start()
    log.info("router started", backends=sorted(router.delivery.workers),
             filters=len(router.pipeline), listen=router.config.server.listen)
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
    body = await read_body(request, router.limits)
    beacons = decode_beacons(body, request.headers.get("Content-Type"), router.limits)
    router.metrics.received.labels("beacon").inc(len(beacons))
    context = request_context(request)
    received_at = now_iso()
    await make_durable(router, "beacon", (
        Event.new(b, uuid=b.get("uuid"), received_at=received_at, context=context)
        for b in beacons))
    router.metrics.request_latency.labels("/beacon").observe(time.perf_counter() - started)
    return json_response({"accepted": len(beacons)}, status=202)


async def make_durable(router: Router, source: str, events: Iterable[Event]) -> int:
    """Run the global pipeline on each event and append the survivors to the spool in one
    durable write; returns how many were kept. Raises Unavailable if the spool refuses."""
    pipeline = router.pipeline
    kept = [e for e in map(pipeline, events) if e is not None]
    if not kept:
        return 0
    assert router.spool is not None
    try:
        await router.spool.append([e.to_json() for e in kept])
    except BaseException:
        for event in kept:
            for undo in event.undo or ():
                undo()
        raise
    router.metrics.accepted.labels(source).inc(len(kept))
    return len(kept)


def request_context(request: web.Request) -> RequestContext:
    """The request facts filters may use; held in memory only."""
    headers = request.headers
    return RequestContext(dnt=headers.get("DNT") == "1", gpc=headers.get("Sec-GPC") == "1",
                          client_ip=request.remote, user_agent=headers.get("User-Agent"))


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
    spool = router.spool
    if spool is not None:
        router.metrics.spool_bytes.set(getattr(spool, "used_bytes", 0))
        for name in router.config.enabled_backends:
            router.metrics.spool_depth.labels(name).set(await spool.depth(name))
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
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    return json_response({"error": error, "detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error", "detail"}`` JSON; a client's mistake is never a 5xx."""
    try:
        return await handler(request)
    except InputError as exc:
        request.app[ROUTER].metrics.rejected.labels("beacon", exc.error).inc()
        return error_response(exc.status, exc.error, exc.detail, exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = exc.reason.lower().replace(" ", "_")
        resp = error_response(exc.status, error, exc.text or exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except Exception:
        log.exception("unhandled error", path=request.path, method=request.method)
        return error_response(500, "internal_error", "the router failed; see its log")
