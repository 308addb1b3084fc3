"""Replays over the admin API: ``POST /admin/replays`` starts one in the router's own process,
``GET /admin/replays[/{id}]`` shows how far each is, ``POST /admin/replays/{id}/stop`` stops one
after its batch in flight (a later start with the same selection goes on from its checkpoint).

Registered by ``add_replay_routes(app, guard)``; ``guard`` is the admin API's token check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from ..errors import ConfigError
from .checkpoint import Selection
from .command import state_dir
from .run import Replay

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
Guard = Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]
_BODY_KEYS = {"from", "to", "since", "until", "where", "dry_run", "restart"}


@dataclass
class Job:
    replay: Replay
    task: asyncio.Task[Any]

    def to_dict(self) -> dict[str, Any]:
        error = None
        if self.task.done() and not self.task.cancelled() and self.task.exception() is not None:
            error = str(self.task.exception())
        return {"id": self.replay.selection.digest(), "running": not self.task.done(),
                "dry_run": self.replay.dry_run, "total": self.replay.total, "error": error,
                **self.replay.checkpoint.to_dict()}


REPLAYS = web.AppKey("replays", dict)  # id → Job


def add_replay_routes(app: web.Application, guard: Guard) -> None:
    """Serve the replay endpoints on ``app`` behind ``guard``."""
    app[REPLAYS] = {}
    app.router.add_post("/admin/replays", guard(start))
    app.router.add_get("/admin/replays", guard(list_replays))
    app.router.add_get("/admin/replays/{id}", guard(show))
    app.router.add_post("/admin/replays/{id}/stop", guard(stop))
    app.on_shutdown.append(_stop_all)


async def start(request: web.Request, router: Any) -> web.StreamResponse:
    """Start a replay: ``{"from", "to", "since"?, "until"?, "where"?, "dry_run"?, "restart"?}``."""
    try:
        body = orjson.loads(await request.read() or b"null")
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or set(body) - _BODY_KEYS or not {"from", "to"} <= set(body):
        return _error(400, "bad_request",
                      'the body is {"from": STORE, "to": BACKEND, "since"?, "until"?, '
                      '"where"?, "dry_run"?, "restart"?}')
    texts = [body.get(k) for k in ("from", "to", "since", "until")]
    if not all(isinstance(v, str) for v in texts[:2]) or not all(
            v is None or isinstance(v, str) for v in texts[2:]):
        return _error(400, "bad_request", "from, to, since and until are strings")
    selection = Selection(body["from"], body["to"], body.get("since"), body.get("until"),
                          body.get("where"))
    jobs: dict[str, Job] = request.app[REPLAYS]
    running = jobs.get(selection.digest())
    if running is not None and not running.task.done():
        return _error(409, "conflict", "this replay is running; GET it to follow it")
    try:
        replay = Replay(router.config, selection, state_dir=state_dir(router.config),
                        dead_letters=router.spool, dry_run=bool(body.get("dry_run")),
                        restart=bool(body.get("restart")))
    except (ConfigError, ValueError) as exc:
        return _error(400, "bad_request", str(exc))
    job = Job(replay, asyncio.create_task(replay.run(), name=f"replay:{selection.digest()}"))
    jobs[selection.digest()] = job
    job.task.add_done_callback(lambda task: _log_end(selection, task))
    log.info("replay started", source=selection.source, target=selection.target, via="admin")
    return web.json_response(job.to_dict(), status=202)


async def list_replays(request: web.Request, router: Any) -> web.StreamResponse:
    """Every replay this process started, running or finished."""
    return web.json_response({"replays": [j.to_dict() for j in request.app[REPLAYS].values()]})


async def show(request: web.Request, router: Any) -> web.StreamResponse:
    job = request.app[REPLAYS].get(request.match_info["id"])
    if job is None:
        return _error(404, "not_found", "no replay with this id in this process")
    return web.json_response(job.to_dict())


async def stop(request: web.Request, router: Any) -> web.StreamResponse:
    """Stop after the batch in flight; the checkpoint keeps where it stopped."""
    job = request.app[REPLAYS].get(request.match_info["id"])
    if job is None:
        return _error(404, "not_found", "no replay with this id in this process")
    await job.replay.stop()
    with contextlib.suppress(Exception):
        await asyncio.shield(job.task)
    return web.json_response(job.to_dict())


async def _stop_all(app: web.Application) -> None:
    for job in app[REPLAYS].values():
        if not job.task.done():
            await job.replay.stop()
    await asyncio.gather(*(j.task for j in app[REPLAYS].values()), return_exceptions=True)


def _log_end(selection: Selection, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error("replay failed", source=selection.source, target=selection.target,
                  reason=str(task.exception()))
    else:
        cp = task.result()
        log.info("replay ended", source=selection.source, target=selection.target,
                 done=cp.done, delivered=cp.delivered, dead_lettered=cp.dead_lettered)


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)
