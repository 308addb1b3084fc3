"""No acknowledged event is ever lost: a real router process, kill -9, restart, count.

The webhook receiver here is a real HTTP server on loopback; the router is a real
``beacon-router serve`` subprocess with a real SQLite spool.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from aiohttp import web
from support import free_port

CONFIG = """
spool: {{path: ./spool.db}}
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


class Receiver:
    """A webhook endpoint that records the uuid of every event it is sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.uuids: list[str] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.uuids.extend(e["uuid"] for e in body["events"])
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def wait_for(self, wanted: set[str], timeout: float = 60.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if wanted <= set(self.uuids):
                return
            await asyncio.sleep(0.05)
        missing = wanted - set(self.uuids)
        raise AssertionError(f"{len(missing)} acknowledged events never arrived")


def beacon() -> dict:
    return {"uuid": str(uuid.uuid4()), "installation_id": str(uuid.uuid4()),
            "version": "1.4.2", "platform": {"os": "linux"}}


async def send(http: aiohttp.ClientSession, url: str, acked: list[str]) -> None:
    """POST one beacon; remember its uuid only if the router answered 202."""
    b = beacon()
    try:
        async with http.post(f"{url}/beacon", json=b) as resp:
            if resp.status == 202:
                acked.append(b["uuid"])
    except (TimeoutError, aiohttp.ClientError):
        pass  # not acknowledged: the router owes nothing for it


@pytest.fixture
async def receiver():
    r = Receiver(free_port())
    yield r
    await r.stop()


async def test_events_acked_while_the_backend_is_down_survive_kill_9(router_process, receiver):
    router = router_process(CONFIG.format(port=receiver.port))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(10):
            await asyncio.gather(*(send(http, router.url, acked) for _ in range(20)))
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
            await send(http, router.url, acked)

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
            await send(http, router.url, acked)

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
