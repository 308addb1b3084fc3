"""No acknowledged event is ever lost: a real router process, kill -9, restart, count.

The webhook receiver here is a real HTTP server on loopback; the router is a real
``beacon-router serve`` subprocess with a real SQLite spool.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from support import WebhookReceiver, send_beacon

CONFIG = """
spool: {{path: ./spool.db}}
# support.beacon()'s uuid is its event id: the tests follow each acknowledged beacon by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
pipeline:
  - {{type: hash, fields: [installation_id], key: test-only-key-0123456789abcdef}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout: 2s
    batch: {{max_events: 50, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""


@pytest.fixture
async def receiver():
    r = WebhookReceiver()
    yield r
    await r.stop()


async def test_events_acked_while_the_backend_is_down_survive_kill_9(router_process, receiver):
    router = router_process(CONFIG.format(port=receiver.port))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(10):
            await asyncio.gather(*(send_beacon(http, router.url, acked) for _ in range(20)))
    assert len(acked) == 200
    router.kill9()

    await receiver.start()
    router.start()
    await router.wait_ready()
    await receiver.wait_for(set(acked))


async def test_kill_9_under_load_loses_no_acknowledged_event(router_process, receiver):
    await receiver.start()
    router = router_process(CONFIG.format(port=receiver.port))
    router.start()
    await router.wait_ready()
    acked: list[str] = []

    async def load(http: aiohttp.ClientSession) -> None:
        for _ in range(400):  # bounded: stops by itself even if the kill never comes
            await send_beacon(http, router.url, acked)

    async with aiohttp.ClientSession() as http:
        senders = [asyncio.create_task(load(http)) for _ in range(16)]
        while len(acked) < 300:
            await asyncio.sleep(0.01)
        router.kill9()
        await asyncio.gather(*senders)
    assert len(acked) >= 300

    router.start()
    await router.wait_ready()
    await receiver.wait_for(set(acked))


async def test_sigterm_mid_load_exits_0_and_the_rest_is_delivered_after_restart(
        router_process, receiver):
    router = router_process(CONFIG.format(port=receiver.port))
    router.start()
    await router.wait_ready()
    acked: list[str] = []

    async def load(http: aiohttp.ClientSession) -> None:
        for _ in range(300):  # bounded
            await send_beacon(http, router.url, acked)

    async with aiohttp.ClientSession() as http:
        senders = [asyncio.create_task(load(http)) for _ in range(8)]
        while len(acked) < 100:
            await asyncio.sleep(0.01)
        assert router.terminate() == 0, router.logs()
        await asyncio.gather(*senders)

    await receiver.start()
    router.start()
    await router.wait_ready()
    await receiver.wait_for(set(acked))
