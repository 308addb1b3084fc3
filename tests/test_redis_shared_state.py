"""State shared across router instances on a Redis spool: dedupe, rate limits, and reloads that
add a backend; on the real Redis at 127.0.0.1:6379, one key prefix per test, deleted after.

The main cases run two real ``beacon-router serve`` processes on one Redis; the others run two
apps in this process (``create_app`` twice, a consumer name each), where a test can reach in.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families
from support import (
    RouterProcess,
    WebhookReceiver,
    beacon,
    free_port,
    require_service,
)

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    name = f"test:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


def webhook(name: str, port: int, router: str) -> str:
    return f"""
  {name}:
    type: webhook
    url: http://127.0.0.1:{port}/{name}
    headers: {{X-Router: "{router}"}}
    batch: {{max_events: 20, max_wait: 20ms}}
"""


def router_config(prefix: str, name: str, body: str, url: str = REDIS_URL) -> str:
    """A router on the shared stream; ``name`` is its consumer name (unique per router)."""
    spool = f'spool: {{type: redis, url: "{url}", key_prefix: "{prefix}", consumer: "{name}"}}\n'
    return spool + body


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text; 0 when there is no such sample."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


# -- two router processes ----------------------------------------------------------------------

Start = Callable[[Callable[[str], str]], Awaitable[tuple[RouterProcess, RouterProcess]]]


@pytest.fixture
async def start_routers(tmp_path: Path, prefix: str) -> AsyncIterator[Start]:
    """``await start_routers(body)``: routers a and b, each on ``body(name)``, both ready."""
    made: list[RouterProcess] = []

    async def start(body: Callable[[str], str]) -> tuple[RouterProcess, RouterProcess]:
        for name in ("a", "b"):
            workdir = tmp_path / name
            workdir.mkdir()
            config = workdir / "router.yaml"
            config.write_text(router_config(prefix, name, body(name)))
            made.append(RouterProcess(str(config), free_port(), str(workdir)))
        for router in made:
            router.start()
        await asyncio.gather(*(r.wait_ready() for r in made))
        return made[0], made[1]

    yield start
    for router in made:
        router.stop()


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.post(
        f"{url}/beacon", json=body, headers=headers
    ) as resp:
        await resp.read()
        return resp.status


async def test_the_same_beacon_sent_to_each_router_within_the_window_is_stored_once(
    start_routers: Start, receiver: WebhookReceiver
) -> None:
    a, b = await start_routers(
        lambda name: "pipeline: [{type: dedupe, fields: [installation_id], window: 1h}]\n"
        f"backends:{webhook('hook', receiver.port, name)}"
    )
    the_beacon, another = beacon(), beacon()
    assert await post(a.url, the_beacon) == 202
    assert await post(b.url, the_beacon) == 202  # accepted, and dropped as a duplicate
    assert await post(b.url, another) == 202

    on_a, on_b = await scrape(a.url), await scrape(b.url)
    assert metric(on_a, "beacon_router_events_accepted_total", source="beacon") == 1
    assert metric(on_b, "beacon_router_events_accepted_total", source="beacon") == 1
    assert metric(on_b, "beacon_router_events_dropped_total", filter="dedupe",
                  reason="duplicate") == 1
    await receiver.wait_for({str(the_beacon["uuid"]), str(another["uuid"])}, ("/hook",))
    assert receiver.received("/hook")[str(the_beacon["uuid"])] == 1


async def test_a_per_ip_limit_holds_across_routers_at_its_configured_total(
    start_routers: Start,
) -> None:
    a, b = await start_routers(lambda name: "limits: {per_ip: {rate: 3, per: 1h}}\nbackends: {}\n")
    statuses = [await post((a, b)[i % 2].url, beacon()) for i in range(6)]
    # Three tokens in all, not three per router: the fourth request is refused, on either one.
    assert statuses == [202, 202, 202, 429, 429, 429]


async def test_a_reload_that_adds_a_backend_on_redis_delivers_new_events_to_it(
    start_routers: Start, receiver: WebhookReceiver
) -> None:
    routers = await start_routers(lambda name: f"backends:{webhook('one', receiver.port, name)}")
    before = beacon()
    assert await post(routers[0].url, before) == 202
    for router in routers:
        config = Path(router.config)
        config.write_text(config.read_text() + webhook("two", receiver.port, config.parent.name))
        assert router.proc is not None
        router.proc.send_signal(signal.SIGHUP)

    async def reloaded() -> bool:
        texts = [await scrape(r.url) for r in routers]
        return all(
            metric(t, "beacon_router_config_reloads_total", result="success") == 1 for t in texts
        )

    await until(reloaded)
    after = [beacon() for _ in range(6)]
    for i, b in enumerate(after):
        assert await post(routers[i % 2].url, b) == 202
    wanted = {str(b["uuid"]) for b in after}
    await receiver.wait_for(wanted | {str(before["uuid"])}, ("/one",))
    await receiver.wait_for(wanted, ("/two",))
    # A backend added at run time starts at the end of the stream, as at start.
    assert str(before["uuid"]) not in receiver.received("/two")
