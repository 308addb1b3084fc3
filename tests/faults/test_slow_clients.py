"""Slow and flooding clients against a real router process: slow headers cut (408) long before
the 75 s keep-alive timeout, 2,000 idle connections leave new beacons served, and header or
cookie floods get a 4xx, never a 5xx or a hang. (10,000 idle connections: bench/faults/.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
import pytest
from support import RouterProcess, free_port, send_beacon

CONFIG = """
server: {header_timeout: 1s}
spool: {path: ./spool.db}
backends:
  out: {type: file, path: ./out.jsonl}
"""
IDLE = 2000


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """One router for the module: each test opens connections of its own."""
    workdir = tmp_path_factory.mktemp("slow-clients")
    (workdir / "router.yaml").write_text(CONFIG)
    proc = RouterProcess(str(workdir / "router.yaml"), free_port(), str(workdir))
    proc.start()
    asyncio.run(proc.wait_ready())
    yield proc
    proc.stop()


async def read_all(reader: asyncio.StreamReader, limit: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), limit)
    except TimeoutError:
        return b"(still open)"


async def test_headers_trickled_one_line_a_second_get_408_and_the_connection_closes(router):
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"POST /beacon HTTP/1.1\r\nHost: x\r\n")
    closed = False
    for n in range(20):  # 10 s of trickling at most, far below the keep-alive timeout (75 s)
        await asyncio.sleep(0.5)
        try:
            writer.write(f"X-Slow-{n}: 1\r\n".encode())
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof() or reader._buffer:
            closed = True
            break
    answer = await read_all(reader, 5)
    writer.close()
    assert closed and answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"error":"request_timeout"' in answer


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(router):
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    answer = await read_all(reader, 10)  # header_timeout is 1 s; keep-alive 75 s
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


async def test_a_slow_body_is_not_cut_by_the_header_deadline_but_by_its_own(router):
    """Headers complete in time: the body's own deadline (request_timeout, 10 s) applies, so
    a body trickled over 2 s (twice the header timeout) is still accepted."""
    body = b'{"installation_id": "slow-body", "version": "1"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"POST /beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    for i in range(0, len(body), 10):
        await asyncio.sleep(0.4)
        writer.write(body[i:i + 10])
    answer = await asyncio.wait_for(reader.read(65536), 10)  # kept alive: no EOF after it
    writer.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]


async def test_two_thousand_idle_connections_do_not_stop_new_beacons(router):
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE):  # plain sockets: connected, never a byte sent
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", router.port))
            idle.append(sock)
        acked: list[str] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await asyncio.gather(*(send_beacon(http, router.url, acked) for _ in range(50)))
        assert len(acked) == 50
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize("headers", [
    pytest.param({f"X-Flood-{i}": "x" for i in range(500)}, id="500 headers"),
    pytest.param({"Cookie": "a=" + "x" * 100_000}, id="one 100 KB cookie"),
    pytest.param({f"X-Cookie-{i}": "c=" + "x" * 8000 for i in range(100)},
                 id="100 cookies of 8 KB (800 KB in all)"),
])
async def test_a_header_or_cookie_flood_gets_a_4xx(router, headers):
    async with aiohttp.ClientSession() as http:
        try:
            async with http.post(f"{router.url}/beacon", json={"installation_id": "a"},
                                 headers=headers) as resp:
                status = resp.status
        except aiohttp.ClientError:  # the server may close before reading it all: no 5xx
            status = 499
    assert 400 <= status < 500
    async with aiohttp.ClientSession() as http:  # and the router serves the next one
        acked: list[str] = []
        await send_beacon(http, router.url, acked)
        assert len(acked) == 1


async def test_large_bodies_on_a_kept_alive_connection_are_not_taken_for_headers(router):
    """Body bytes that arrive before aiohttp hands the request to its handler once counted as
    headers: a 300 KB batch got 431 (tests/test_resources.py found it)."""
    batch = [{"installation_id": f"i{i}", "pad": "x" * 250} for i in range(1000)]
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # the same connection, kept alive
            async with http.post(f"{router.url}/beacon", json=batch) as resp:
                assert resp.status == 202, await resp.text()
