"""A full disk under the SQLite spool: 503 while full, nothing acked lost, recovery by itself.

The spool lives on a 4 MiB tmpfs the test mounts (a disk that really fills), under a real
``beacon-router serve`` process; the webhook backend is a real loopback server, down while
the disk fills. Before issue 17 the drained spool stayed unwritable for ever, because deleting
delivered rows needed the space it no longer had, and it logged one line per refused request.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid

import aiohttp
import pytest
from support import RouterProcess, WebhookReceiver, record_fault, small_filesystem

CONFIG = """
# the beacons' own uuid is their event id: each acknowledged one is followed by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
spool: {{path: {disk}/spool.db, reserve: 1MiB}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout: 2s
    batch: {{max_events: 200, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""
PAD = "x" * 2000  # a 2 KB beacon: the 4 MiB disk fills after about a thousand


@pytest.fixture
def disk(tmp_path):
    with small_filesystem(str(tmp_path / "disk"), "4m") as path:
        yield path


@pytest.fixture
async def receiver():
    r = WebhookReceiver()
    yield r
    await r.stop()


async def post(http: aiohttp.ClientSession, url: str, acked: list[str],
               statuses: list[tuple[int, str | None, dict[str, object]]]) -> int:
    beacon = {"uuid": str(uuid.uuid4()), "installation_id": str(uuid.uuid4()), "pad": PAD}
    async with http.post(f"{url}/beacon", json=beacon) as resp:
        body = await resp.json(content_type=None)
        statuses.append((resp.status, resp.headers.get("Retry-After"), body))
        if resp.status == 202:
            acked.append(str(beacon["uuid"]))
        return resp.status


def log_lines(router: RouterProcess) -> list[str]:
    with open(router.log, encoding="utf-8") as fh:
        return [line for line in fh if line.startswith("{")]


async def wait_alive(router: RouterProcess, timeout: float = 30.0) -> None:
    """/healthz, not /readyz: a router that starts on a full disk is alive but not ready."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{router.url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"router not alive:\n{router.logs()}")


async def test_a_full_disk_answers_503_loses_nothing_and_ingest_resumes_by_itself(
        router_process, receiver, disk):
    router = router_process(CONFIG.format(disk=disk, port=receiver.port))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    statuses: list[tuple[int, str | None, dict[str, object]]] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(400):  # bounded: 4,000 beacons would need twice the disk
            got = await asyncio.gather(*(post(http, router.url, acked, statuses)
                                         for _ in range(10)))
            if 503 in got:
                break
        for _ in range(200):  # keep pushing on the full disk: every answer a 503, no 500
            await post(http, router.url, acked, statuses)
        assert {s for s, _, _ in statuses} == {202, 503}
        refused = [(ra, body) for s, ra, body in statuses if s == 503]
        assert all(ra and int(ra) > 0 for ra, _ in refused)
        assert all(set(body) == {"error", "detail"} for _, body in refused)
        async with http.get(f"{router.url}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["spool_writable"] is False

        # kill -9 while full, restart on the full disk: it comes up (alive) and drains.
        router.kill9()
        router.start()
        await wait_alive(router)
        await receiver.start()
        await receiver.wait_for(set(acked))

        # The backlog drained: ingest resumes by itself, without a restart.
        deadline = time.monotonic() + 60
        while await post(http, router.url, [], []) != 202:
            assert time.monotonic() < deadline, f"never writable again:\n{router.logs()}"
            await asyncio.sleep(0.2)
        more: list[str] = []
        for _ in range(50):
            assert await post(http, router.url, more, []) == 202, router.logs()
        await receiver.wait_for(set(more))
        await router.wait_ready()

    assert router.terminate() == 0
    got = receiver.received()
    record_fault("disk full under the SQLite spool (4 MiB tmpfs), kill -9 while full",
                 acked=len(acked) + len(more), lost=len(set(acked + more) - set(got)),
                 duplicated=sum(n - 1 for n in got.values()), refused_503=len(refused))
    assert max(got.values()) <= 2  # redelivery only around the kill
    conn = sqlite3.connect(f"{disk}/spool.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # One line per fault and interval, not one per refused request.
    events = [json.loads(line).get("message") for line in log_lines(router)]
    assert events.count("spool write failed") <= 3
    assert events.count("spool disk full: ingest answers 503 until space returns") <= 3


STORE_CONFIG = """
# the beacons' own uuid is their event id: each acknowledged one is followed by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
spool: {{path: ./spool.db}}
backends:
  archive:
    type: store
    url: sqlite:///{disk}/beacons.db
    batch: {{max_events: 100, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""


def hog(disk: str, leave: int) -> str:
    """Fill ``disk`` (as another process would) until ``leave`` bytes are free."""
    path = f"{disk}/hog"
    st = os.statvfs(disk)
    with open(path, "wb") as fh:
        fh.write(bytes(max(0, st.f_bavail * st.f_frsize - leave)))
    return path


async def test_a_full_store_disk_retries_its_batches_and_loses_nothing(router_process, disk):
    router = router_process(STORE_CONFIG.format(disk=disk))
    router.start()
    await router.wait_ready()
    hogged = hog(disk, 256 * 1024)  # the store has room for about a hundred rows
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(40):  # the spool is on another disk: every beacon is acknowledged
            got = await asyncio.gather(*(post(http, router.url, acked, []) for _ in range(10)))
            assert set(got) == {202}
        await asyncio.sleep(1)  # the store fills and its worker retries
        async with http.get(f"{router.url}/readyz") as resp:
            queued = (await resp.json())["backends"]["archive"]["queued"]
        assert queued > 0
        router.kill9()  # mid-retry
        os.unlink(hogged)  # the other process frees its space
        router.start()
        await router.wait_ready()
        deadline = time.monotonic() + 60
        while True:
            async with http.get(f"{router.url}/readyz") as resp:
                if (await resp.json())["backends"]["archive"]["queued"] == 0:
                    break
            assert time.monotonic() < deadline, router.logs()
            await asyncio.sleep(0.2)
    assert router.terminate() == 0
    conn = sqlite3.connect(f"{disk}/beacons.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {row[0] for row in conn.execute("SELECT uuid FROM beacons")}
    conn.close()
    record_fault("disk full under the SQLite store backend, kill -9 mid-retry",
                 acked=len(acked), lost=len(set(acked) - stored), duplicated="n/a (uuid key)")
    assert set(acked) <= stored and len(acked) == 400
    assert any("disk is full" in line for line in log_lines(router))  # the fault really happened
