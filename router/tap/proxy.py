"""A backend's tap under ``serve --delivery process``: the ingest process's ``/admin/tap``
relays the stream the delivery process serves on its unix socket (``GET /tap``,
router/serve/delivery_process.py), where the backends and their hub are.

Bytes are copied as they arrive; when the client leaves, the upstream connection is closed, so
the delivery side's subscriber goes away with it and its hub is idle again. A delivery process
that cannot be reached (restarting) is a 503 after a short connect timeout, never a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import orjson
from aiohttp import web

from .hub import CHECK_READER

TAP_PATH = "/tap"
CONNECT_TIMEOUT = 2.0  # seconds: a restarting delivery process must not hold the client

_open: set[aiohttp.ClientResponse] = set()  # relays in flight, closed on shutdown


async def proxy(request: web.Request, socket_path: str,
                secure: Callable[[web.StreamResponse], web.StreamResponse]
                ) -> web.StreamResponse:
    """Relay ``GET /tap`` with the client's query; the delivery process's 400/404 pass
    through as they are."""
    # No total timeout: a tap lasts as long as its reader; keepalive lines keep it moving.
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT,
                                    sock_connect=CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path),
                                     timeout=timeout) as session:
        try:
            upstream = await session.get(f"http://delivery{TAP_PATH}", params=request.query)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return _unreachable()
        async with upstream:
            if upstream.status != 200:
                try:
                    body = orjson.loads(await upstream.read())
                except (ValueError, aiohttp.ClientError):
                    return _unreachable()
                return web.json_response(body, status=upstream.status)
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                                   "Cache-Control": "no-store"})
            secure(response)
            await response.prepare(request)
            _open.add(upstream)
            try:
                await _copy(request, upstream, response)
            except (ConnectionError, aiohttp.ClientError):
                pass  # either side left; leaving the block closes the upstream
            finally:
                _open.discard(upstream)
            return response


async def _copy(request: web.Request, upstream: aiohttp.ClientResponse,
                response: web.StreamResponse) -> None:
    """Copy the upstream's bytes as they arrive, until it ends or the client leaves: checked
    every ``CHECK_READER`` seconds while nothing arrives, not only at the next keepalive line,
    since the delivery process's subscriber stays until this closes the upstream."""
    while True:
        try:
            async with asyncio.timeout(CHECK_READER):
                chunk = await upstream.content.readany()
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                return
            continue
        if not chunk:  # the end of the stream
            await response.write_eof()
            return
        await response.write(chunk)


def close_proxies() -> None:
    """End every relay (this process shuts down): closing the upstream ends its copy loop."""
    for upstream in list(_open):
        upstream.close()


def _unreachable() -> web.Response:
    return web.json_response({"error": "unavailable", "detail": "the delivery process, where "
                              "the backends run, cannot be reached (restarting?): try again "
                              "shortly"}, status=503, headers={"Retry-After": "1"})
