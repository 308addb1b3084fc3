"""``GET /admin/tap``: the events flowing through this router, as a stream of JSON lines.

``?backend=NAME`` shows what that backend is handed (after its `when:` and filters); without
it, what the global pipeline kept. ``?when=`` takes a condition as JSON (as in `when:`),
``?limit=N`` ends the stream after N events. Lines are events as the spool holds them; a
``{"tap": {"dropped": N}}`` line says the reader fell behind and N events were skipped. An
empty line every few seconds keeps idle connections open (and finds closed ones).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from ..conditions import Condition
from .hub import CHECK_READER, PIPELINE, TAP, Subscriber, dumps_notice
from .proxy import close_proxies, proxy

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
Guard = Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]
Secure = Callable[[web.StreamResponse], web.StreamResponse]
KEEPALIVE = 5.0  # seconds without an event before an empty line is sent
MAX_LIMIT = 1_000_000

SECURE = web.AppKey("tap_secure", object)


def add_tap_routes(app: web.Application, guard: Guard, secure: Secure) -> None:
    """Serve ``/admin/tap`` on ``app`` behind ``guard``; ``secure`` adds the security headers
    (a stream's headers leave before the middleware that adds them to other answers)."""
    app[SECURE] = secure
    app.router.add_get("/admin/tap", guard(tap))
    app.on_shutdown.append(_close_taps)


async def tap(request: web.Request, router: Any) -> web.StreamResponse:
    """Stream events as JSON lines until ``limit`` or the client leaves."""
    stage = request.query.get("backend", PIPELINE)
    secure: Secure = request.app[SECURE]  # type: ignore[assignment]
    if stage != PIPELINE and router.link is not None:
        # The backends run in the delivery process: its socket serves the same stream.
        return await proxy(request, router.link.socket_path, secure)
    workers = router.delivery.workers if router.delivery is not None else {}
    return await serve_tap(request, set(workers), secure)


async def serve_tap(request: web.Request, backends: Collection[str],
                    secure: Secure | None = None) -> web.StreamResponse:
    """The tap's stream for this process's hub; ``backends`` are the stages it can show
    besides the pipeline's. The delivery process serves it on its socket too
    (serve/delivery_process.py)."""
    query = request.query
    stage = query.get("backend", PIPELINE)
    if stage != PIPELINE and stage not in backends:
        return _error(404, "not_found", f"no running backend {stage[:64]!r}: "
                                        f"{', '.join(sorted(backends)) or 'none'}")
    try:
        limit = int(query.get("limit", str(MAX_LIMIT)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, "bad_request", f"limit must be 1 to {MAX_LIMIT}")
    when = None
    if "when" in query:
        try:
            when = Condition.model_validate(orjson.loads(query["when"])).compile()
        except (orjson.JSONDecodeError, ValidationError) as exc:
            return _error(400, "bad_request", f"when: not a condition: {str(exc)[:300]}")

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "Cache-Control": "no-store"})
    if secure is not None:
        secure(response)
    await response.prepare(request)
    subscriber = Subscriber(stage, when)
    TAP.subscribe(subscriber)
    queue = subscriber.queue
    sent, reported, ending = 0, 0, False
    quiet = 0.0  # seconds since the last line written
    try:
        while sent < limit and not ending:
            try:
                async with asyncio.timeout(CHECK_READER):
                    first = await queue.get()
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the reader left
                quiet += CHECK_READER
                if quiet >= KEEPALIVE:
                    await response.write(b"\n")
                    quiet = 0.0
                continue
            quiet = 0.0
            # Under load many lines wait: one write for all of them, not one per event.
            lines = [first]
            while len(lines) < limit - sent and not queue.empty():
                lines.append(queue.get_nowait())
            if None in lines:  # the router is shutting down
                lines = lines[:lines.index(None)]
                ending = True
            if subscriber.dropped > reported:
                lines.insert(0, dumps_notice(subscriber.dropped - reported))
                reported = subscriber.dropped
                sent -= 1  # the notice is not an event
            if lines:
                await response.write(b"\n".join(lines) + b"\n")  # type: ignore[arg-type]
            sent += len(lines)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    except ConnectionError:
        pass  # the reader left
    finally:
        TAP.unsubscribe(subscriber)
    return response


async def close_taps(_app: web.Application) -> None:
    """Wake this process's taps with the end of their stream (an app's ``on_shutdown``)."""
    TAP.close_all()


async def _close_taps(app: web.Application) -> None:
    await close_taps(app)
    close_proxies()  # and end the relays of the delivery process's


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)
