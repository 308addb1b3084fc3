"""Ingest protection through a real loopback server: rate limits, source tokens, slow bodies,
security headers."""

from __future__ import annotations

import asyncio

import pytest
from opsupport import file_events
from support import until

BEACON = {"installation_id": "inst-1", "version": "1.0.0"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

ARCHIVE = """
    backends:
      archive: {type: file, path: ./data/archive.jsonl, batch: {max_wait: 20ms}}
"""


def assert_secure(resp) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (resp.status, name)
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert "aiohttp" not in resp.headers.get("Server", "")


async def test_per_ip_limit_answers_429_with_retry_after_and_spares_probes(router_client):
    client = await router_client("""
    spool: {path: ./data/spool.db}
    limits: {per_ip: {rate: 2, per: 1m}}
    """)
    assert [(await client.post("/beacon", json=BEACON)).status for _ in range(2)] == [202, 202]
    resp = await client.post("/beacon", json=BEACON)
    assert resp.status == 429
    assert (await resp.json())["error"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 30  # half a minute for one of 2 per minute
    assert_secure(resp)
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(probe)).status == 200


async def test_per_ip_limit_keys_on_the_forwarded_client_behind_a_trusted_proxy(router_client):
    client = await router_client("""
    spool: {path: ./data/spool.db}
    limits: {per_ip: {rate: 1, per: 1h}, trusted_proxies: [127.0.0.0/8, "::1"]}
    """)

    def via(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    assert (await client.post("/beacon", json=BEACON, headers=via("203.0.113.1"))).status == 202
    assert (await client.post("/beacon", json=BEACON, headers=via("203.0.113.1"))).status == 429
    assert (await client.post("/beacon", json=BEACON, headers=via("203.0.113.2"))).status == 202


async def test_per_installation_limit_refuses_the_request_and_stores_nothing(
    router_client, tmp_path
):
    client = await router_client(
        """
    spool: {path: ./data/spool.db}
    limits: {per_installation: {rate: 2, per: 1d}}
    """
        + ARCHIVE
    )
    assert (await client.post("/beacon", json=[BEACON, BEACON])).status == 202
    resp = await client.post("/beacon", json=[{**BEACON, "installation_id": "other"}, BEACON])
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await client.post("/beacon", json={**BEACON, "installation_id": "other"})).status == 202
    await until(lambda: len(file_events(tmp_path / "data" / "archive.jsonl")) == 3)
    ids = [e["data"]["installation_id"] for e in file_events(tmp_path / "data" / "archive.jsonl")]
    assert sorted(ids) == ["inst-1", "inst-1", "other"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer second-source-token"}, 202),
        ({"Authorization": "bearer first-source-token"}, 202),
    ],
)
async def test_beacon_source_tokens(router_client, headers, status):
    client = await router_client("""
    spool: {path: ./data/spool.db}
    sources: {beacon: {tokens: [first-source-token, second-source-token]}}
    """)
    resp = await client.post("/beacon", json=BEACON, headers=headers)
    assert resp.status == status
    if status == 401:
        assert (await resp.json())["error"] == "unauthorized"
        assert "wrong-token" not in await resp.text()  # a token is never echoed back


async def test_security_headers_are_on_every_response_errors_included(router_client):
    client = await router_client("""
    spool: {path: ./data/spool.db}
    server: {max_body: 1KiB}
    """)
    answers = [
        await client.post("/beacon", json=BEACON),  # 202
        await client.post("/beacon", data=b"[", headers={"Content-Type": "application/json"}),
        await client.post(
            "/beacon", data=b"x" * 4096, headers={"Content-Type": "application/json"}
        ),  # 413
        await client.post("/beacon", data=b"{}", headers={"Content-Type": "image/png"}),
        await client.get("/beacon"),  # 405
        await client.get("/no/such/path"),  # 404
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/metrics"),
        await client.get("/admin/status"),  # 404: admin off
    ]
    assert sorted({r.status for r in answers}) == [200, 202, 400, 404, 405, 413, 415]
    for resp in answers:
        assert_secure(resp)


async def test_a_body_that_trickles_in_gets_408_and_the_connection_is_closed(router_client):
    client = await router_client("""
    spool: {path: ./data/spool.db}
    server: {request_timeout: 300ms}
    """)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"installation_id": '
    )
    await writer.drain()
    # The client never sends the other bytes; the router must answer on its own.
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"error":"request_timeout"' in body
    assert b"nosniff" in head
    # A body that arrives in time is unaffected by the deadline.
    assert (await client.post("/beacon", json=BEACON)).status == 202
