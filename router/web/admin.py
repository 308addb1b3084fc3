"""The admin API under ``/admin/``: status, backends, dead letters, reload.

Off unless ``admin.token`` is set: every admin path answers 404 then, as if it did not exist.
With a token, a request must carry ``Authorization: Bearer TOKEN`` (compared in constant time)
or it gets 401. It is served on its own listener, ``admin.listen`` (127.0.0.1:8081 by default),
so the ingest port, which every installation can reach, never exposes it; ``admin.listen:
same`` serves it on the ingest port instead. docs/admin.md describes each endpoint.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, cast

import orjson
import structlog
from aiohttp import web
from pydantic import SecretStr

from .. import __version__, auth
from ..config.loader import load
from ..errors import ConfigError, Unavailable
from ..metrics import event_age
from ..replay.admin import add_replay_routes
from ..speedups import in_use as native_in_use
from ..spool.base import DeadLetterQueue, ManagedSpool
from ..spool.shardset import admin_spool
from ..tap.admin import add_tap_routes
from .reload import RELOADER
from .responses import error_middleware, error_response, json_response, secured
from .state import ROUTER, WORKER, Router
from .stats import add_stats_admin_routes

log = structlog.get_logger(__name__)

AdminHandler = Callable[[web.Request, Router], Awaitable[web.Response]]
MAX_DLQ_LIMIT = 1000
_MAX_ADMIN_BODY = 64 * 1024


def authorized(request: web.Request, token: SecretStr) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>``, compared in constant time."""
    return auth.matches(auth.bearer(request.headers.get("Authorization")), (token,))


def admin_only(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """404 while ``admin.token`` is unset (read per request: a reload may set it), 401 without
    the token, else the handler."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        router = request.app[ROUTER]
        token = router.config.admin.token
        if token is None:
            raise web.HTTPNotFound()
        if not authorized(request, token):
            response = error_response(
                401, "unauthorized", "send the admin token: Authorization: Bearer TOKEN"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="beacon-router admin"'
            return response
        return await handler(request, router)

    return guarded


def add_admin_routes(app: web.Application) -> None:
    """Serve ``/admin/*`` on ``app``, which holds ROUTER and RELOADER."""
    app.router.add_get("/admin/status", status)
    app.router.add_get("/admin/backends", backends)
    app.router.add_get("/admin/backends/{name}/dlq", dlq_list)
    app.router.add_post("/admin/backends/{name}/dlq/replay", dlq_replay)
    app.router.add_post("/admin/backends/{name}/dlq/purge", dlq_purge)
    app.router.add_post("/admin/reload", reload)
    add_replay_routes(app, admin_only)  # type: ignore[arg-type]
    add_tap_routes(app, admin_only, secured)  # type: ignore[arg-type]


def create_admin_app(ingest: web.Application) -> web.Application:
    """The admin API as its own app for ``admin.listen``, sharing the ingest app's router."""
    app = web.Application(middlewares=[error_middleware], client_max_size=_MAX_ADMIN_BODY)
    app[ROUTER] = ingest[ROUTER]
    app[RELOADER] = ingest[RELOADER]
    if WORKER in ingest:
        app[WORKER] = ingest[WORKER]
    add_admin_routes(app)
    add_stats_admin_routes(app, ingest)  # /api/stats and /dashboard: admin pages too
    return app


# -- handlers ------------------------------------------------------------------------------------


@admin_only
async def status(request: web.Request, router: Router) -> web.Response:
    """The process, its config and a one-line summary per backend."""
    reloader = request.app[RELOADER]
    spool = router.spool
    writable = spool is not None and await spool.writable()
    summary = {}
    remote = await _remote_backends(router)
    if remote is not None:
        summary = {name: {"healthy": b["healthy"], "queued": b["queued"]}
                   for name, b in remote.items()}
    elif router.delivery is not None:
        for name, worker in router.delivery.workers.items():
            summary[name] = {
                "healthy": worker.health.healthy,
                "queued": await spool.depth(name) if spool else None,
            }
    return json_response(
        {
            "version": __version__,
            "native": native_in_use(),
            "uptime_seconds": round(time.time() - router.started_at, 3),
            "draining": router.draining,
            "config": {"file": router.config.file, "restart_required": reloader.restart_required},
            "last_reload": reloader.last.to_dict() if reloader.last else None,
            "spool": {
                "type": router.config.spool.type,
                "writable": writable,
                "used_bytes": getattr(spool, "used_bytes", None),
            },
            "backends": summary,
        }
    )


@admin_only
async def backends(request: web.Request, router: Router) -> web.Response:
    """Every backend the config names or the spool keeps a queue for, with its state."""
    spool = _spool(router)
    config = router.config
    workers = router.delivery.workers if router.delivery is not None else {}
    async with _dead_letter_queue(request, router) as every:
        queues, dead = await every.queues(), await every.dead_letter_counts()
    if _worker_count(request) > 1:  # the local file is one of several: count them all
        workers = {}
    remote = await _remote_backends(router)
    peek = getattr(spool, "peek", None)
    now = time.time()
    out: dict[str, Any] = {}
    for name in sorted(set(config.backends) | set(queues) | set(dead)):
        spec = config.backends.get(name)
        worker = workers.get(name)
        there = remote.get(name) if remote is not None else None
        queued = await spool.depth(name) if worker is not None else queues.get(name, 0)
        entry: dict[str, Any] = {
            "type": spec.type if spec else None,
            "configured": spec is not None,
            "enabled": bool(spec and spec.enabled),
            "running": worker is not None or there is not None,
            "queued": queued,
            "dead_letters": dead.get(name, 0),
        }
        if there is not None:  # --delivery process: its worker's state
            entry["health"] = {key: there[key] for key in
                               ("healthy", "consecutive_failures", "last_error", "last_success")}
            entry["oldest_event_age_seconds"] = there["oldest_event_age_seconds"]
        elif worker is not None:
            h = worker.health
            entry["health"] = {
                "healthy": h.healthy,
                "consecutive_failures": h.consecutive_failures,
                "last_error": h.last_error,
                "last_success": h.last_success,
            }
            if peek is not None:
                oldest = await peek(name) if queued else None
                entry["oldest_event_age_seconds"] = round(event_age(oldest, now), 3)
        out[name] = entry
    return json_response({"backends": out})


@admin_only
async def dlq_list(request: web.Request, router: Router) -> web.Response:
    """A backend's dead letters, oldest first: ``?limit=100&since=ISO-8601``."""
    name = request.match_info["name"]
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_DLQ_LIMIT:
        return error_response(400, "bad_request", f"limit must be 1 to {MAX_DLQ_LIMIT}")
    since = request.query.get("since")
    if since is not None and not _iso(since):
        return error_response(400, "bad_request", "since must be an ISO 8601 time")
    async with _dead_letter_queue(request, router) as dlq:
        letters = await dlq.dead_letters(name, limit, since)
    return json_response(
        {
            "backend": name,
            "dead_letters": [
                {
                    "id": d.id,
                    "failed_at": d.failed_at,
                    "attempts": d.attempts,
                    "reason": d.reason,
                    "event": _event(d.body),
                }
                for d in letters
            ],
        }
    )


@admin_only
async def dlq_replay(request: web.Request, router: Router) -> web.Response:
    """Put dead letters back in the backend's queue; ``{"ids": [...], "since": ...}`` narrow."""
    name = request.match_info["name"]
    selection = await _selection(request)
    if isinstance(selection, web.Response):
        return selection
    running = (router.config.enabled_backends if router.link is not None
               else router.delivery.workers if router.delivery is not None else {})
    if name not in running:
        return error_response(
            409,
            "conflict",
            f"{name[:64]!r} is not a running backend; nothing would deliver a replay",
        )
    async with _dead_letter_queue(request, router) as dlq:
        moved = await dlq.replay(name, *selection)
    log.info("dead letters replayed", backend=name, events=moved, via="admin")
    return json_response({"backend": name, "replayed": moved})


@admin_only
async def dlq_purge(request: web.Request, router: Router) -> web.Response:
    """Delete dead letters; for a backend no longer configured, with no narrowing, also
    release its queue so the spool can compact what only it still held."""
    name = request.match_info["name"]
    selection = await _selection(request)
    if isinstance(selection, web.Response):
        return selection
    ids, since = selection
    release = name not in router.config.backends and not ids and not since
    async with _dead_letter_queue(request, router) as dlq:
        purged = await dlq.purge(name, ids, since, release_queue=release)
    log.info(
        "dead letters purged", backend=name, events=purged, released_queue=release, via="admin"
    )
    return json_response({"backend": name, "purged": purged, "released_queue": release})


@admin_only
async def reload(request: web.Request, router: Router) -> web.Response:
    """Re-read the config file: 200 with what changed, or 422 with why it was refused."""
    if _worker_count(request) > 1 or router.link is not None:
        # Every worker (and the delivery process) must reload, not just this one: check the
        # file here, then let the supervisor forward SIGHUP to all of them.
        try:
            load(router.config.file)
        except ConfigError as exc:
            return json_response({"error": "config_invalid", "detail": str(exc)}, status=422)
        os.kill(os.getppid(), signal.SIGHUP)
        return json_response({"ok": True, "workers": _worker_count(request),
                              "detail": "reload signalled to every worker"}, status=202)
    result = await request.app[RELOADER].reload()
    if result.ok:
        return json_response(result.to_dict())
    return json_response(
        {"error": "config_invalid", "detail": "; ".join(result.errors), **result.to_dict()},
        status=422,
    )


# -- helpers -------------------------------------------------------------------------------------


async def _remote_backends(router: Router) -> dict[str, dict[str, Any]] | None:
    """Under ``--delivery process``: its backends' state ({} while it is away); else None."""
    if router.link is None:
        return None
    state = await router.link.state()
    return dict(state["backends"]) if state else {}


def _worker_count(request: web.Request) -> int:
    slot = request.app.get(WORKER)
    return slot.count if slot is not None else 1


@contextlib.asynccontextmanager
async def _dead_letter_queue(request: web.Request, router: Router
                             ) -> AsyncIterator[DeadLetterQueue]:
    """This process's spool; under ``serve --workers N`` every worker's file at once, so a
    listing or a replay does not depend on which worker took the request."""
    if _worker_count(request) == 1 or router.config.spool.type != "sqlite":
        yield _spool(router)
        return
    every = admin_spool(router.config.spool)
    await every.open([])
    try:
        yield every
    finally:
        await every.close()


def _spool(router: Router) -> ManagedSpool:
    """The open spool with its dead-letter queue (every spool ``create_spool`` makes has one)."""
    if router.spool is None:
        raise Unavailable("the spool is not open yet", retry_after=1)
    return cast(ManagedSpool, router.spool)


async def _selection(request: web.Request) -> tuple[list[int] | None, str | None] | web.Response:
    """``ids`` and ``since`` from an optional JSON body, or the 400 answer."""
    raw = await request.read()
    if not raw.strip():
        return None, None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_response(400, "bad_request", "the body must be JSON")
    if not isinstance(body, dict) or set(body) - {"ids", "since"}:
        return error_response(400, "bad_request", 'the body is {"ids": [int], "since": ISO}')
    ids, since = body.get("ids"), body.get("since")
    if ids is not None and (
        not isinstance(ids, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        return error_response(400, "bad_request", "ids must be a list of integers")
    if since is not None and not (isinstance(since, str) and _iso(since)):
        return error_response(400, "bad_request", "since must be an ISO 8601 time")
    return ids or None, since


def _iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _event(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # a corrupt entry: its reason says so
