"""Services restarted under a real router process: every acknowledged event is delivered.

- PostgreSQL (the store backend) crashed and restarted mid-delivery: a cluster this test owns
  (``initdb`` + ``pg_ctl`` on a scratch directory and port), stopped with ``-m immediate``
  (no clean shutdown; recovery from its WAL on start).
- Redis (the spool) killed with SIGKILL and restarted mid-ingest: a ``redis-server`` this test
  owns with ``appendonly yes`` and ``appendfsync always``.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import pytest
from services import PostgresCluster, RedisServer
from support import WebhookReceiver, record_fault, send_beacon

PG_CONFIG = """
# the beacons' own uuid is their event id: each acknowledged one is followed by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
spool: {{path: ./spool.db}}
backends:
  archive:
    type: store
    url: {url}
    timeout: 2s
    batch: {{max_events: 50, max_wait: 20ms}}
    retry: {{initial: 50ms, max: 500ms, give_up_after: 1h}}
"""

REDIS_CONFIG = """
# the beacons' own uuid is their event id: each acknowledged one is followed by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
spool: {{type: redis, url: "{url}", key_prefix: restart-test}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout: 2s
    batch: {{max_events: 50, max_wait: 20ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""


@pytest.fixture
def postgres_cluster():
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def redis_server():
    server = RedisServer(appendfsync="always")
    try:
        server.start()
        yield server
    finally:
        server.remove()


async def load_until(router_url: str, acked: list[str], stop: asyncio.Event,
                     senders: int = 8) -> None:
    """Post beacons from ``senders`` clients until ``stop`` is set (bounded: 600 each)."""

    async def one(http: aiohttp.ClientSession) -> None:
        for _ in range(600):
            if stop.is_set():
                return
            await send_beacon(http, router_url, acked)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(one(http) for _ in range(senders)))


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_postgresql_crashed_and_restarted_mid_delivery_loses_no_acked_event(
        router_process, postgres_cluster):
    router = router_process(PG_CONFIG.format(url=postgres_cluster.url))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    stop = asyncio.Event()
    load = asyncio.create_task(load_until(router.url, acked, stop))
    for _ in range(2):  # two crashes, each with deliveries in flight
        count = len(acked)
        await wait_until(lambda c=count: _true(len(acked) >= c + 150), 60, "no load")
        postgres_cluster.stop("immediate")
        await asyncio.sleep(1.0)  # ingest goes on (the spool is local); delivery retries
        postgres_cluster.start()
    stop.set()
    await load
    assert len(acked) >= 300

    async def stored_all() -> bool:
        conn = await asyncpg.connect(postgres_cluster.url)
        try:
            rows = await conn.fetch("SELECT uuid FROM beacons")
        except asyncpg.UndefinedTableError:
            return False
        finally:
            await conn.close()
        return set(acked) <= {r["uuid"] for r in rows}

    await wait_until(stored_all, 60, f"acked events missing in PostgreSQL:\n{router.logs()}")
    record_fault("PostgreSQL (store) crashed and restarted mid-delivery", injected=2,
                 acked=len(acked), lost=0, duplicated="n/a (uuid key)")
    assert router.terminate() == 0


async def test_redis_killed_and_restarted_under_the_spool_loses_no_acked_event(
        router_process, redis_server):
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        router = router_process(REDIS_CONFIG.format(url=redis_server.url, port=receiver.port))
        router.start()
        await router.wait_ready()
        acked: list[str] = []
        stop = asyncio.Event()
        load = asyncio.create_task(load_until(router.url, acked, stop))
        for _ in range(2):
            count = len(acked)
            await wait_until(lambda c=count: _true(len(acked) >= c + 150), 60, "no load")
            redis_server.kill9()  # every acked XADD was fsynced (appendfsync always)
            await asyncio.sleep(1.0)  # ingest answers 503 meanwhile: nothing is acked
            redis_server.start()
        await asyncio.sleep(1.0)
        stop.set()
        await load
        assert len(acked) >= 300
        await receiver.wait_for(set(acked), timeout=60)
        got = receiver.received()
        record_fault("redis-server (spool, appendfsync always) killed -9 and restarted",
                     injected=2, acked=len(acked), lost=len(set(acked) - set(got)),
                     duplicated=sum(n - 1 for n in got.values()))
        assert router.terminate() == 0
    finally:
        await receiver.stop()


async def _true(value: bool) -> bool:
    return value
