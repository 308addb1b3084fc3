"""Slow headers (slowloris) are cut after ``server.header_timeout``, not the keep-alive timeout.

aiohttp closes a connection whose request headers never finish only when its keep-alive timer
runs out (75 s here: longer than load balancers' idle timeout, as it must be). A client that
trickles a header line every few seconds holds a connection, a file descriptor and parser
memory that long; thousands of them take the process's descriptors. aiohttp has no header
timeout of its own, so each connection's protocol is wrapped: from the first byte of a request
(or from the connection's start) its headers must be complete within ``header_timeout``, else
it gets ``408`` and is closed; and they may not exceed ``MAX_HEADER_BYTES`` altogether (431).
Bodies keep their own deadline (``server.request_timeout``, enforced by the ingest guard), and
idle keep-alive connections their own.

The wrapper reads three attributes of aiohttp's ``RequestHandler`` (``_request_count``,
``_current_request``, ``_messages``); tests/faults/test_slow_clients.py fails if they change.
"""

from __future__ import annotations

import asyncio
import re
import resource
from typing import Any

import orjson
import structlog
from aiohttp import web

from ..logs import Throttled

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=60.0)



def _raw(status: str, error: str, detail: str) -> bytes:
    body = orjson.dumps({"error": error, "detail": detail})
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


TIMEOUT_408 = _raw("408 Request Timeout", "request_timeout",
                   "request headers took too long to arrive")
TOO_LARGE_431 = _raw("431 Request Header Fields Too Large", "headers_too_large",
                     "request headers are too large altogether")
# All of a request's header lines together. aiohttp limits each line (8 KiB) and their number
# (128), not their sum: 128 cookies of 8 KiB would be 1 MiB of headers held per request.
MAX_HEADER_BYTES = 64 * 1024
# What starts a request. aiohttp hands a parsed request to its handler a moment later, so body
# bytes arriving in between look "between requests": only bytes that open a request line (or
# follow them, the deadline armed) count as headers, never a body's.
_REQUEST_LINE = re.compile(rb"[A-Z]{3,10} ")
LINGER = 2.0  # seconds a cut connection stays open for its answer to be read (see _cut)


class HeaderWatch(asyncio.Protocol):
    """Wraps one connection's aiohttp protocol and enforces the header deadline on it."""

    def __init__(self, inner: Any, timeout: float) -> None:
        self.inner, self.timeout = inner, timeout
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.header_bytes = 0  # of the request whose headers are arriving
        self.cut = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)
        self._arm()  # a connection that never sends a full request is cut too

    def data_received(self, data: bytes) -> None:
        if self.cut:
            return  # answered and closing: what still comes is read and dropped
        inner = self.inner
        parsed = inner._request_count
        inner.data_received(data)
        if inner._request_count != parsed:
            if self.timer is not None:  # headers complete: the body has its own deadline
                self._disarm()
            self.header_bytes = 0
        elif self._between_requests() and (self.timer is not None
                                           or _REQUEST_LINE.match(data) is not None):
            if self.timer is None:
                self._arm()  # the first bytes of the next request on a kept-alive connection
            self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES:
                throttled("info", "connection cut: request headers too large")
                self._disarm()
                self._cut(TOO_LARGE_431)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _between_requests(self) -> bool:
        return self.inner._current_request is None and not self.inner._messages

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self._expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if not self._between_requests() or self.transport is None:
            return  # a request is being read or handled: not a header's business any more
        throttled("info", "connection cut: request headers too slow", timeout=self.timeout)
        self._cut(TIMEOUT_408)

    def _cut(self, answer: bytes) -> None:
        """Answer, send FIN, and close a moment later. Closed at once with the client's unread
        bytes in our buffer, the kernel would send a reset that can destroy the answer before
        the client reads it; until the close, what the client still sends is dropped."""
        if self.transport is None or self.cut:
            return
        self.cut = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER, self.transport.close)


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections are wrapped in :class:`HeaderWatch`."""

    __slots__ = ("_header_timeout",)

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *,
                 header_timeout: float, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._header_timeout = header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (TCPSite's own
        # start would create the server with aiohttp's bare protocol factory)
        server = self._runner.server
        assert server is not None
        timeout = self._header_timeout

        def factory() -> asyncio.Protocol:
            return HeaderWatch(server(), timeout)

        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files to the hard one: each idle client holds a descriptor,
    and the common default of 1,024 would refuse new beacons long before memory runs out.
    Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
