"""The ingest guard: the main app's one middleware — per-IP rate limit before a handler reads
anything, a deadline for the body while it reads, every error as JSON, the security headers."""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader, web

from ..errors import BodyTooSlow, RequestTimeout
from .intake import client_ip
from .posthog_config import with_cors
from .responses import Handler, error_for, secured
from .state import ROUTER

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # infrastructure's; never rate limited


@web.middleware
async def ingest_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``error_middleware`` and, before a handler reads anything, the per-IP rate limit; while
    it reads, a deadline, so a client that trickles its body (slowloris) gets 408 rather than
    holding a handler. Every answer leaves with the security headers, and on PostHog's paths
    with its CORS headers.

    The main app's only middleware: each layer costs every request a coroutine and a wrapper
    of aiohttp's, so error handling, the security headers and CORS are done here rather than
    by further middlewares and a response signal."""
    try:
        if request.path in PROBES:
            response = await handler(request)
        else:
            router = request.app[ROUTER]
            limits = router.rate_limits
            if limits.shared:
                await limits.check_client_shared(client_ip(request, router))
            elif limits.per_ip is not None:
                limits.check_client(client_ip(request, router))
            stream = request.content
            if stream.is_eof():  # the whole body came with the headers (most beacons): no timer
                response = await handler(request)
            else:
                response = await _deadline(request, handler, stream,
                                           router.config.server.request_timeout)
    except Exception as exc:
        response = error_for(request, exc)
    return with_cors(request, secured(response))


async def _deadline(request: web.Request, handler: Handler, stream: StreamReader,
                    timeout: float) -> web.StreamResponse:
    timer = asyncio.get_running_loop().call_later(timeout, _expire_body, stream, timeout)
    try:
        return await handler(request)
    except BodyTooSlow as exc:
        raise RequestTimeout(str(exc)) from None
    finally:
        timer.cancel()


def _expire_body(stream: StreamReader, timeout: float) -> None:
    if not stream.is_eof():  # all of it arrived in time: the handler may take as long as it needs
        stream.set_exception(BodyTooSlow(f"the body did not arrive within {timeout:g}s"))
