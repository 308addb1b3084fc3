"""HTTP: ``GET /api/stats`` and ``/dashboard`` (admin token), ``GET /public/stats`` (opt-in).

Everything here is off by default and answers 404 until configured: the admin endpoints need
``admin.token``, the public page ``stats.public: true``; both need a ``type: store`` backend.
The admin endpoints are served where the admin API is: on the ``admin.listen`` listener
(``add_stats_admin_routes``), or on the ingest port with ``admin.listen: same``; the public
page is on the ingest port.
The dashboard page itself holds no data, so the browser may load it without a token; it asks
for the token and sends it as ``Authorization: Bearer`` on each ``/api/stats`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from ..errors import BadRange, StoreUnavailable
from ..stats.html import public_page
from ..stats.report import Range
from ..stats.service import Stats
from .state import ROUTER

log = structlog.get_logger(__name__)
STATIC = Path(__file__).parent.parent / "stats" / "static"
STATIC_FILES = {"dashboard.js": "text/javascript", "chart.umd.min.js": "text/javascript",
                "tap.js": "text/javascript"}  # tap.js: the live view of GET /admin/tap
STATS = web.AppKey("stats", Stats)
# The dashboard runs only our own script; Chart.js styles its canvases through the DOM.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' "
    "data:; style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PUBLIC_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def add_stats_routes(app: web.Application) -> None:
    """Mount on the ingest app (``create_app``): ``/public/stats``, and the admin pages too
    when ``admin.listen: same`` puts the admin API on the ingest port."""
    app.router.add_get("/public/stats", public_stats)
    if _config(app).admin.listen == "same":
        _add_admin_pages(app)
    app.cleanup_ctx.append(_stats_ctx)


def add_stats_admin_routes(admin: web.Application, ingest: web.Application) -> None:
    """Mount ``/api/stats`` and ``/dashboard`` on the admin listener's app, sharing the ingest
    app's statistics (``create_admin_app`` calls this once the ingest app has started)."""
    stats = ingest.get(STATS)
    if stats is not None:
        admin[STATS] = stats
    _add_admin_pages(admin)


def _add_admin_pages(app: web.Application) -> None:
    app.router.add_get("/api/stats", api_stats)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/dashboard/static/{name}", dashboard_static)


async def _stats_ctx(app: web.Application) -> AsyncIterator[None]:
    config = _config(app)
    stats = Stats.from_config(config)  # opens nothing until the first read
    wanted = config.admin.token is not None or config.stats.public
    if stats is not None:
        app[STATS] = stats
    elif wanted:
        log.warning(
            "stats: no backend of type store, so /api/stats, /dashboard and /public/stats stay off"
        )
    # Read the whole store now, in the background, if anyone may ask: the first report is
    # then ready when the dashboard opens (1M beacons take seconds to read).
    warming = asyncio.create_task(stats.warm()) if stats is not None and wanted else None
    try:
        yield
    finally:
        if warming is not None:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
        if stats is not None:
            await stats.aclose()


async def api_stats(request: web.Request) -> web.Response:
    """The report as JSON: ``?from=&to=&granularity=day|week|month&dimension=a,b``."""
    stats = _admin_stats(request)
    if (denied := _denied(request)) is not None:
        return denied
    query = request.query
    try:
        span = Range.parse(
            query.get("from"), query.get("to"), query.get("granularity"), stats.today()
        )
    except BadRange as exc:
        return _error(400, "bad_request", str(exc))
    selected = [d for given in query.getall("dimension", []) for d in given.split(",") if d]
    unknown = [d for d in selected if d not in stats.settings.dimensions]
    if unknown:
        return _error(
            400,
            "bad_request",
            f"unknown dimension {unknown[0][:64]!r}; configured: "
            f"{', '.join(stats.settings.dimensions)}",
        )
    try:
        report = await stats.report(span, selected or None)
    except StoreUnavailable as exc:
        return _unavailable(exc)
    return _json(report, {"Cache-Control": "no-store"})


async def dashboard(request: web.Request) -> web.StreamResponse:
    """The single-page dashboard (no data in it: it fetches /api/stats with the token)."""
    _admin_stats(request)
    return web.FileResponse(
        STATIC / "dashboard.html",
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": DASHBOARD_CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def dashboard_static(request: web.Request) -> web.StreamResponse:
    _admin_stats(request)
    name = request.match_info["name"]
    if name not in STATIC_FILES:  # a fixed list: nothing else in the package is served
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC / name,
        headers={
            "Content-Type": STATIC_FILES[name],
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def public_stats(request: web.Request) -> web.Response:
    """k-anonymous statistics: JSON, or HTML for browsers (``?format=html|json`` decides)."""
    stats = request.app.get(STATS)
    if stats is None or not _config(request.app).stats.public:  # read per request: reload
        raise web.HTTPNotFound()
    try:
        body = await stats.public()
    except StoreUnavailable as exc:
        return _unavailable(exc)
    headers = {"Cache-Control": f"public, max-age={int(stats.settings.cache)}"}
    if _wants_html(request):
        return web.Response(
            text=public_page(body),
            content_type="text/html",
            headers={
                **headers,
                "Content-Security-Policy": PUBLIC_CSP,
                "X-Content-Type-Options": "nosniff",
            },
        )
    return _json(body, headers)


def _admin_stats(request: web.Request) -> Stats:
    """The app's Stats when the admin token is configured, else 404: the endpoint is off."""
    stats = request.app.get(STATS)
    if _config(request.app).admin.token is None or stats is None:
        raise web.HTTPNotFound()
    return stats


def _denied(request: web.Request) -> web.Response | None:
    """A 401 unless the request carries the admin token (compared in constant time)."""
    token = _config(request.app).admin.token.get_secret_value()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    response = _error(401, "unauthorized", "send the admin token: Authorization: Bearer TOKEN")
    response.headers["WWW-Authenticate"] = 'Bearer realm="beacon-router"'
    return response


def _wants_html(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt in ("html", "json"):
        return fmt == "html"
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


def _config(app: web.Application) -> Any:
    return app[ROUTER].config


def _json(body: object, headers: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": error, "detail": detail}),
        status=status,
        content_type="application/json",
    )


def _unavailable(exc: StoreUnavailable) -> web.Response:
    log.warning("stats: store unreadable", reason=str(exc))
    response = _error(503, "store_unavailable", "the store cannot be read now; see the log")
    response.headers["Retry-After"] = "10"
    return response
