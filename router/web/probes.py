"""The infrastructure's probes: ``/healthz`` (alive), ``/readyz`` (config loaded, spool
writable, not draining; per-backend health, from the delivery process under ``--delivery
process``) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from aiohttp import web

from ..metrics import collect_spool
from .responses import json_response
from .state import ROUTER


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the config is loaded, the spool is writable and we are not draining."""
    router = request.app[ROUTER]
    spool_ok = router.spool is not None and await router.spool.writable()
    backends = {}
    delivery: dict[str, object] | None = None
    if router.link is not None:  # --delivery process: it answers for the backends
        state = await router.link.state()
        delivery = {"process": "running" if state else "unreachable",
                    "pid": state.get("pid") if state else None}
        reported = (state or {}).get("backends", {})
        # Every enabled backend is listed, also while the delivery process is away or has not
        # started it yet: what it does not report is unknown (null), not absent, so a reader
        # never takes "no backends listed" for "nothing queued".
        for name in sorted(router.config.enabled_backends.keys() | reported.keys()):
            b = reported.get(name, {})
            backends[name] = {key: b.get(key) for key in
                              ("healthy", "consecutive_failures", "last_error", "queued")}
    elif router.delivery is not None:
        for name, worker in router.delivery.workers.items():
            h = worker.health
            backends[name] = {"healthy": h.healthy, "consecutive_failures":
                              h.consecutive_failures, "last_error": h.last_error,
                              "queued": await router.spool.depth(name) if router.spool else None}
    ready = spool_ok and not router.draining
    # A delivery process that is away (restarting) does not make ingest unready: what it
    # accepts is durable in the spool and delivered once delivery is back.
    body: dict[str, object] = {"status": "ready" if ready else "not_ready",
                               "spool_writable": spool_ok, "draining": router.draining,
                               "backends": backends}
    if delivery is not None:
        body["delivery"] = delivery
    return json_response(body, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    await measure_spool(request.app)
    body, content_type = request.app[ROUTER].metrics.render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def measure_spool(app: web.Application) -> None:
    """Set the spool gauges to what the spool holds now (for a scrape, or periodically)."""
    router = app[ROUTER]
    if router.spool is not None and router.delivery is not None:
        await collect_spool(router.metrics, router.spool, list(router.delivery.workers))
