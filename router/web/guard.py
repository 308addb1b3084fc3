"""The ingest guard: the main app's one middleware — per-IP rate limit before a handler reads
anything, a deadline for the body while it reads, every error as JSON, the security headers."""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader, web

from ..errors import BodyTooSlow, RequestTimeout
from .intake import client_ip
from .responses import Handler, error_for, secured
from .state import ROUTER

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # infrastructure's; never rate limited



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
        except BodyTooSlow as exc:
            raise RequestTimeout(str(exc)) from None
        finally:
            timer.cancel()
    except Exception as exc:
        return secured(error_for(request, exc))


def _expire_body(stream: StreamReader, timeout: float) -> None:
    if not stream.is_eof():  # all of it arrived in time: the handler may take as long as it needs
        stream.set_exception(BodyTooSlow(f"the body did not arrive within {timeout:g}s"))
