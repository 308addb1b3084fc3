"""The shared HTTP client against real loopback servers."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from router.backends.http import MAX_RESPONSE_BYTES, HttpClient, host_of
from router.errors import RetryableError


@pytest.fixture
async def client():
    http = HttpClient(timeout=5)
    yield http
    await http.aclose()


async def test_returns_status_headers_and_body(aiohttp_server, client):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"seen": (await request.read()).decode()}, status=207, headers={"X-Request-Id": "abc"}
        )

    app = web.Application()
    app.router.add_post("/", handler)
    server = await aiohttp_server(app)

    resp = await client.request("POST", str(server.make_url("/")), body=b"hello")

    assert resp.status == 207
    assert resp.headers["x-request-id"] == "abc"  # case-insensitive, as HTTP says
    assert resp.body == b'{"seen": "hello"}'


async def test_a_huge_response_body_is_read_only_up_to_the_cap(aiohttp_server, client):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_RESPONSE_BYTES * 4), status=400)

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)

    resp = await client.request("GET", str(server.make_url("/")))

    assert resp.status == 400
    assert len(resp.body) == MAX_RESPONSE_BYTES


async def test_a_server_that_drops_the_connection_is_retryable(client):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(RetryableError) as err:
            await client.request("POST", f"http://127.0.0.1:{port}/x?token=T0KEN", body=b"{}")
    finally:
        server.close()
        await server.wait_closed()

    assert f"127.0.0.1:{port}" in err.value.reason
    assert "T0KEN" not in err.value.reason


async def test_send_classifies_the_status_for_the_whole_batch(aiohttp_server, client):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query["status"]))

    app = web.Application()
    app.router.add_post("/", handler)
    server = await aiohttp_server(app)
    url = str(server.make_url("/"))

    ok, retry, dead = [
        await client.send("POST", f"{url}?status={s}", 3, body=b"{}") for s in (204, 503, 422)
    ]

    assert ok.ok
    assert retry.retry == (0, 1, 2)
    assert set(dead.dead) == {0, 1, 2}
    assert dead.reason == f"HTTP 422 from {host_of(url)}"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://user:pw@hooks.example.com/T0KEN?x=1", "hooks.example.com"),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
        ("http://[::1]:9000/x", "[::1]:9000"),
        ("postgresql://ops:pw@db.internal:5432/beacons", "db.internal:5432"),
    ],
)
def test_host_of_keeps_only_host_and_port(url, host):
    assert host_of(url) == host


async def test_http_proxy_from_the_environment_is_used_unless_no_proxy_says_otherwise(
        aiohttp_server, monkeypatch):
    from aiohttp import web

    from router.backends.http import HttpClient

    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))  # a proxy gets the absolute URL of the real target
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    server = await aiohttp_server(app)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    client = HttpClient(timeout=5)
    try:
        result = await client.send("POST", "http://vendor.invalid/batch/", 1, body=b"{}")
        assert result.ok and seen == ["http://vendor.invalid/batch/"]
        bypassed = await client.send("POST", "http://direct.invalid/x", 1, body=b"{}")
        assert bypassed.retry, "NO_PROXY host must be reached directly (and does not exist)"
        assert len(seen) == 1
    finally:
        await client.aclose()
