"""The aiohttp application: thin handlers over ingest → pipeline → spool, plus delivery.

``create_app(config)`` wires one resource per ``cleanup_ctx`` (spool, delivery) so that start
and stop sit together, and stop runs in reverse: delivery drains before the spool closes.
Every request passes the ingest guard first (per-IP rate limit, a deadline for the body, every
error as JSON), and every response leaves with the security headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from .. import multiproc
from ..config import Config
from ..delivery import Delivery
from ..delivery_link import DeliveryLink
from ..filters import Pipeline
from ..ingest import Limits
from ..metrics import Metrics
from ..ratelimit import RateLimits
from ..spool import Spool, create_spool
from ..spool.factory import create_shared
from .admin import add_admin_routes
from .beacon import add_profile_routes
from .guard import ingest_guard
from .openapi import add_openapi_route
from .posthog import add_posthog_routes
from .posthog_config import add_posthog_config_routes
from .probes import healthz, measure_spool, metrics_endpoint, readyz
from .reload import add_reloader
from .state import ROUTER, Router, drop_counter
from .stats import add_stats_routes

log = structlog.get_logger(__name__)


def create_app(config: Config, *, spool: Spool | None = None,
               link: DeliveryLink | None = None) -> web.Application:
    """The router as an aiohttp app; ``spool`` may be given (tests), else built from config.
    With ``link`` the app only ingests: a delivery process delivers from its spool and
    answers for its backends (``serve --delivery process``)."""
    metrics = Metrics(shared_spool=config.spool.type == "redis")
    shared = create_shared(config.spool)
    router = Router(config=config, metrics=metrics, limits=Limits.from_server(config.server),
                    rate_limits=RateLimits(config.limits, shared=shared), shared=shared,
                    link=link,
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
    multiproc.install(app, measure_spool)  # serve --workers: each worker's spool gauges
    multiproc.flush_every_second(app, metrics.flush)  # … and its ingest counts
    add_profile_routes(app)  # /beacon and each source profile's paths
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    add_openapi_route(app)
    add_posthog_routes(app)
    add_posthog_config_routes(app)  # after it: only where the capture API is served
    add_stats_routes(app)
    add_reloader(app)
    if config.admin.listen == "same":  # else server.py serves it on its own listener
        add_admin_routes(app)
    return app


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
    if router.link is not None:
        log.info("router started", delivery="process", filters=len(router.pipeline))
        try:
            yield
        finally:
            router.draining = True
            await router.link.aclose()
        return
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
