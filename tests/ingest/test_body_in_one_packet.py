"""read_body when the whole body came with the headers (read without an await, as most beacons
are): the same caps and the same bytes as when it trickles in, on a real loopback server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from router.errors import InputError
from router.ingest import Limits, read_body

LIMITS = web.AppKey("limits", Limits)


async def echo(request: web.Request) -> web.Response:
    try:
        body = await read_body(request, request.app[LIMITS])
    except InputError as exc:
        return web.json_response({"detail": exc.detail}, status=exc.status)
    return web.Response(body=body)


async def one_packet(port: int, head: bytes, body: bytes) -> tuple[int, bytes]:
    """Send the request in one write; the status and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"\r\n" + body)
    await writer.drain()
    answer = await reader.read()  # Connection: close
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def chunked(data: bytes, size: int) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
             for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.fixture
async def port(aiohttp_server: Any) -> int:
    app = web.Application()
    app[LIMITS] = Limits(max_body=4096)
    app.router.add_post("/", echo)
    server: TestServer = await aiohttp_server(app, auto_decompress=False)
    return int(server.port)  # type: ignore[arg-type]


HEAD = b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"


async def test_a_chunked_body_in_one_packet_is_read_whole(port: int) -> None:
    body = bytes(range(256)) * 16  # 4096 bytes: exactly the cap
    status, echoed = await one_packet(port, HEAD + b"Transfer-Encoding: chunked\r\n",
                                      chunked(body, 1000))
    assert (status, echoed) == (200, body)


async def test_a_chunked_body_over_the_cap_in_one_packet_is_refused_with_413(port: int) -> None:
    status, answer = await one_packet(port, HEAD + b"Transfer-Encoding: chunked\r\n",
                                      chunked(b"x" * 4097, 1000))
    assert status == 413
    assert b"body is over 4 KiB" in answer


async def test_a_body_with_its_length_in_one_packet_is_read_whole(port: int) -> None:
    status, echoed = await one_packet(port, HEAD + b"Content-Length: 5\r\n", b"hello")
    assert (status, echoed) == (200, b"hello")
