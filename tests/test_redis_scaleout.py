"""Scale-out on the real Redis at 127.0.0.1:6379: two router processes on one stream, kill -9
of one mid-load; and Redis going away and coming back under a running router.

The routers are real ``beacon-router serve`` subprocesses; the webhook receiver is a real HTTP
server on loopback; an outage is a real TCP proxy in front of Redis being cut.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
from support import (
    RouterProcess,
    TcpProxy,
    WebhookReceiver,
    beacon,
    free_port,
    send_beacon,
)

from router.config.loader import loads
from router.web.app import ROUTER, create_app

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"
BACKENDS = ("one", "two")
PATHS = tuple(f"/{name}" for name in BACKENDS)

ROUTER_CONFIG = """
spool: {{type: redis, url: "{url}", key_prefix: "{prefix}", claim_idle: 1s}}
# support.beacon()'s uuid is its event id: the tests follow each acknowledged beacon by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
backends:
""" + "".join(
    f"""
  {name}:
    type: webhook
    url: http://127.0.0.1:{{port}}/{name}
    headers: {{{{X-Router: "{{router}}"}}}}
    timeout: 2s
    batch: {{{{max_events: 20, max_wait: 20ms}}}}
    retry: {{{{initial: 50ms, max: 300ms, give_up_after: 1h}}}}
"""
    for name in BACKENDS
)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def routers(tmp_path, prefix, receiver):
    """Two router processes with one config but for the name they sign their webhooks with."""
    made = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        config = workdir / "router.yaml"
        config.write_text(
            ROUTER_CONFIG.format(url=REDIS_URL, prefix=prefix, port=receiver.port, router=name)
        )
        made.append(RouterProcess(str(config), free_port(), str(workdir)))
    yield made
    for router in made:
        router.stop()


async def test_two_routers_share_a_stream_and_a_kill_9_loses_no_acknowledged_event(
    routers, receiver
):
    a, b = routers
    for router in routers:
        router.start()
    await asyncio.gather(a.wait_ready(), b.wait_ready())
    acked: list[str] = []
    turns = itertools.cycle([a.url, b.url])  # a load balancer's round robin

    async def load(http: aiohttp.ClientSession) -> None:
        for _ in range(80):  # bounded: stops by itself even if the kill never comes
            await send_beacon(http, next(turns), acked)

    async with aiohttp.ClientSession() as http:
        senders = [asyncio.create_task(load(http)) for _ in range(12)]
        while len(acked) < 250 and not all(s.done() for s in senders):
            await asyncio.sleep(0.01)
        a.kill9()
        await asyncio.gather(*senders)
    assert len(acked) >= 250

    await receiver.wait_for(set(acked), PATHS)
    for backend in BACKENDS:
        # Only a's batch in flight at the kill (sent, not acked) may arrive twice: b took it
        # over after claim_idle. Everything else arrives exactly once.
        from_a = [uuids for router, uuids in receiver.requests[f"/{backend}"] if router == "a"]
        in_flight = set(from_a[-1]) if from_a else set()
        twice = {u for u, n in receiver.received(f"/{backend}").items() if n > 1}
        assert twice <= in_flight, f"{backend}: duplicates outside a's last batch"


CONFIG = """
spool: {{type: redis, url: "redis://127.0.0.1:{port}/0", key_prefix: "{prefix}"}}
backends:
  mock:
    type: router.testing:MockBackend
    batch: {{max_events: 10, max_wait: 10ms}}
"""


async def test_while_redis_is_away_ingest_answers_503_and_delivery_resumes_after(
    prefix, aiohttp_client
):
    proxy = TcpProxy("127.0.0.1", 6379)  # not started: Redis is unreachable from the start
    app = create_app(loads(CONFIG.format(port=proxy.port, prefix=prefix)))
    client = await aiohttp_client(app)  # the router starts anyway and waits for Redis

    async def post() -> aiohttp.ClientResponse:
        resp = await client.post("/beacon", json=beacon())
        await resp.read()
        return resp

    down = await post()
    assert down.status == 503
    assert int(down.headers["Retry-After"]) > 0
    assert (await client.get("/readyz")).status == 503

    await proxy.start()
    assert (await post()).status == 202
    assert (await client.get("/readyz")).status == 200
    await proxy.cut()  # and away again, with connections open
    assert (await post()).status == 503
    assert (await client.get("/readyz")).status == 503
    await proxy.start()
    assert (await post()).status == 202

    backend = app[ROUTER].delivery.workers["mock"].backend
    for _ in range(200):
        if len(backend.events) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(backend.events) == 2
    await proxy.cut()
