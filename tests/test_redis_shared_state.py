"""State shared across router instances on a Redis spool: dedupe, rate limits, and reloads that
add a backend; on the real Redis at 127.0.0.1:6379, one key prefix per test, deleted after.

The main cases run two real ``beacon-router serve`` processes on one Redis; the others run two
apps in this process (``create_app`` twice, a consumer name each), where a test can reach in.
"""

from __future__ import annotations

import asyncio
import json
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
    EVENT_IDS,
    RouterProcess,
    TcpProxy,
    WebhookReceiver,
    beacon,
    free_port,
    until,
)

from router.config.loader import loads
from router.dryrun import dry_run
from router.spool import SqliteSpool
from router.spool.redis import RedisSpool
from router.web.app import ROUTER, create_app

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"


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
    return spool + EVENT_IDS + body


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
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/beacon", json=body, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status


async def test_the_same_beacon_sent_to_each_router_within_the_window_is_stored_once(
    start_routers: Start, receiver: WebhookReceiver
) -> None:
    a, b = await start_routers(
        lambda name: (
            "pipeline: [{type: dedupe, fields: [installation_id], window: 1h}]\n"
            f"backends:{webhook('hook', receiver.port, name)}"
        )
    )
    the_beacon, another = beacon(), beacon()
    assert await post(a.url, the_beacon) == 202
    assert await post(b.url, the_beacon) == 202  # accepted, and dropped as a duplicate
    assert await post(b.url, another) == 202

    on_a, on_b = await scrape(a.url), await scrape(b.url)
    assert metric(on_a, "beacon_router_events_accepted_total", source="beacon") == 1
    assert metric(on_b, "beacon_router_events_accepted_total", source="beacon") == 1
    assert (
        metric(on_b, "beacon_router_events_dropped_total", filter="dedupe", reason="duplicate") == 1
    )
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


# -- two apps in this process ------------------------------------------------------------------

DEDUPE = "pipeline: [{type: dedupe, fields: [installation_id], window: 1h}]\nbackends: {}\n"


async def accepted(client: Any) -> float:
    return metric(
        await (await client.get("/metrics")).text(),
        "beacon_router_events_accepted_total",
        source="beacon",
    )


async def test_a_beacon_one_router_could_not_store_is_no_duplicate_when_retried_on_another(
    prefix: str, aiohttp_client: Any, redis_client: redis.Redis
) -> None:
    a = await aiohttp_client(create_app(loads(router_config(prefix, "a", DEDUPE))))
    b = await aiohttp_client(create_app(loads(router_config(prefix, "b", DEDUPE))))
    full = a.app[ROUTER].spool
    full.max_events, full.length = 1, 1  # the stream is at its limit, as last measured
    the_beacon = beacon()
    assert (await a.post("/beacon", json=the_beacon)).status == 503

    async def forgotten() -> bool:
        return not [k async for k in redis_client.scan_iter(match=f"{prefix}:dedupe:*")]

    await until(forgotten)  # in the background, long before a client's Retry-After
    assert (await b.post("/beacon", json=the_beacon)).status == 202
    assert await accepted(b) == 1
    # Now b's copy is remembered by both: a drops its next one before reaching its full spool.
    assert (await a.post("/beacon", json=the_beacon)).status == 202
    text = await (await a.get("/metrics")).text()
    assert metric(text, "beacon_router_events_dropped_total", reason="duplicate") == 1


@pytest.fixture(params=["sqlite", "redis"])
def spool_config(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``spool_config(body)``: a whole config on a SQLite file, or on Redis under a prefix."""
    if request.param == "sqlite":
        return lambda body: f"spool: {{path: {tmp_path / 'spool.db'}}}\n{body}"
    prefix = request.getfixturevalue("prefix")
    return lambda body: router_config(prefix, "a", body)


async def test_a_request_refused_by_a_later_filter_leaves_nothing_for_dedupe_to_remember(
    spool_config: Callable[[str], str], tmp_path: Path, aiohttp_client: Any
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "required": ["version"]}')
    client = await aiohttp_client(
        create_app(
            loads(
                spool_config(
                    "pipeline:\n"
                    "  - {type: dedupe, fields: [installation_id], window: 1h}\n"
                    f"  - {{type: validate, schema: {schema}, on_invalid: reject}}\n"
                    "backends: {}\n"
                )
            )
        )
    )
    good, bad = beacon(), beacon()
    del bad["version"]
    assert (await client.post("/beacon", json=[good, bad])).status == 400
    assert (await client.post("/beacon", json=good)).status == 202  # fixed and sent again
    assert await accepted(client) == 1


async def test_a_per_installation_limit_holds_across_routers(
    prefix: str, aiohttp_client: Any
) -> None:
    body = "limits: {per_installation: {rate: 2, per: 1h}}\nbackends: {}\n"
    a = await aiohttp_client(create_app(loads(router_config(prefix, "a", body))))
    b = await aiohttp_client(create_app(loads(router_config(prefix, "b", body))))
    chatty = beacon()
    statuses = [(await c.post("/beacon", json=chatty)).status for c in (a, b, a)]
    assert statuses == [202, 202, 429]
    assert (await b.post("/beacon", json=beacon())).status == 202  # another installation


async def test_while_redis_is_away_rate_limits_let_requests_through_and_say_so_once(
    prefix: str, aiohttp_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)  # not started: Redis is unreachable
    body = "limits: {per_ip: {rate: 1, per: 1h}}\n" + DEDUPE
    url = f"redis://127.0.0.1:{proxy.port}/0"
    client = await aiohttp_client(create_app(loads(router_config(prefix, "a", body, url))))
    statuses = [(await client.post("/beacon", json=beacon())).status for _ in range(3)]
    assert statuses == [503, 503, 503]  # never 429: the limiter is open, the spool refuses
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("redis unavailable for shared state") == 1

    await proxy.start()
    seen: list[int] = []

    async def limited_again() -> bool:
        seen.append((await client.post("/beacon", json=beacon())).status)
        return seen[-1] == 429

    await until(limited_again)
    assert 202 in seen  # the one token, then the limit holds again
    await proxy.cut()


async def test_redis_holds_only_digests_and_every_key_it_is_given_expires(
    prefix: str, aiohttp_client: Any, redis_client: redis.Redis
) -> None:
    body = "limits: {per_ip: {rate: 5, per: 1s}, per_installation: {rate: 5, per: 1s}}\n" + DEDUPE
    client = await aiohttp_client(create_app(loads(router_config(prefix, "a", body))))
    raw_id = "inst-3f1c9a-identifying"
    assert (await client.post("/beacon", json={"installation_id": raw_id})).status == 202

    keys = {k.decode() async for k in redis_client.scan_iter(match=f"{prefix}:*")}
    keys.discard(f"{prefix}:beacons")  # the spool's stream: the event, after the pipeline
    kinds = sorted({k.removeprefix(prefix + ":").split(":")[0] for k in keys})
    assert kinds == ["dedupe", "ratelimit", "ratelimit-salt"]
    assert len([k for k in keys if ":ratelimit:" in k]) == 2  # per ip, per installation
    for key in keys:
        value = await redis_client.dump(key)
        assert raw_id not in key and "127.0.0.1" not in key
        assert raw_id.encode() not in value and b"127.0.0.1" not in value
        assert 0 < await redis_client.pttl(key) <= 2 * 86400 * 1000


async def test_a_shared_dedupe_honours_when_and_keeps_the_order_of_a_request(
    prefix: str, aiohttp_client: Any
) -> None:
    body = (
        "pipeline:\n"
        "  - {type: dedupe, fields: [installation_id], window: 1h,"
        " when: {field: kind, equals: heartbeat}}\n"
        "  - {type: drop, fields: [kind]}\n"
        "backends: {mock: {type: router.testing:MockBackend, batch: {max_wait: 10ms}}}\n"
    )
    client = await aiohttp_client(create_app(loads(router_config(prefix, "a", body))))
    events = [
        {"installation_id": "x", "kind": "heartbeat", "n": 1},
        {"installation_id": "x", "kind": "other", "n": 2},  # no dedupe for it
        {"installation_id": "x", "kind": "heartbeat", "n": 3},  # a duplicate of 1
        {"installation_id": "y", "kind": "heartbeat", "n": 4},
    ]
    assert (await client.post("/beacon", json=events)).status == 202
    backend = client.app[ROUTER].delivery.workers["mock"].backend

    async def delivered() -> bool:
        return len(backend.events) >= 3

    await until(delivered)
    assert [e.data for e in backend.events] == [
        {"installation_id": "x", "n": 1, "product": "test-beacon"},
        {"installation_id": "x", "n": 2, "product": "test-beacon"},
        {"installation_id": "y", "n": 4, "product": "test-beacon"},
    ]


async def test_two_dedupe_filters_with_the_same_fields_do_not_share_one_memory(
    prefix: str, aiohttp_client: Any
) -> None:
    body = (
        "pipeline:\n"
        "  - {type: dedupe, fields: [installation_id], window: 1h}\n"
        "  - {type: dedupe, fields: [installation_id], window: 24h}\n"
        "backends: {}\n"
    )
    client = await aiohttp_client(create_app(loads(router_config(prefix, "a", body))))
    the_beacon = beacon()
    for _ in range(2):
        assert (await client.post("/beacon", json=the_beacon)).status == 202
    assert await accepted(client) == 1


def test_dry_run_of_a_redis_config_runs_dedupe_in_memory_without_redis() -> None:
    config = loads(router_config("unused", "a", DEDUPE, url="redis://127.0.0.1:9/0"))
    the_beacon = beacon()
    assert "event" in dry_run(config, dict(the_beacon))["pipeline"]
    assert "event" in dry_run(config, dict(the_beacon))["pipeline"]  # a fresh memory per run


# -- RedisSpool.attach and .peek, beside SqliteSpool's --------------------------------------------


def bodies(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"n": i}).encode() for i in range(start, start + n)]


@pytest.fixture
async def open_spool(
    spool_config: Callable[[str], str], tmp_path: Path
) -> AsyncIterator[Callable[[list[str]], Awaitable[Any]]]:
    """``await open_spool(backends)``: the spool ``spool_config`` names, open."""
    opened: list[Any] = []

    async def make(backends: list[str]) -> Any:
        config = loads(spool_config("backends: {}\n")).spool
        spool = (
            SqliteSpool(config.path)
            if config.type == "sqlite"
            else RedisSpool(REDIS_URL, key_prefix=config.key_prefix, consumer="a")
        )
        await spool.open(backends)
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        await spool.close()


async def test_peek_shows_the_oldest_entry_a_backend_has_not_acked(open_spool: Any) -> None:
    spool = await open_spool(["a"])
    assert await spool.peek("a") is None
    await spool.append(bodies(3))
    assert (await spool.peek("a")).body == bodies(1)[0]
    first, second = await spool.read("a", 1), await spool.read("a", 1)
    assert (await spool.peek("a")).body == bodies(1)[0]  # handed out is not done
    await spool.ack("a", first)
    assert (await spool.peek("a")).body == bodies(1, 1)[0]
    await spool.ack("a", second)
    assert (await spool.peek("a")).body == bodies(1, 2)[0]  # not handed out yet
    await spool.ack("a", await spool.read("a", 10))
    assert await spool.peek("a") is None


async def test_attach_starts_a_new_backend_at_the_end_and_a_known_one_at_what_it_did_not_ack(
    open_spool: Any,
) -> None:
    spool = await open_spool(["a"])
    await spool.append(bodies(2))
    await spool.attach("b")
    await spool.append(bodies(1, 2))
    assert [e.body for e in await spool.read("b", 10)] == bodies(1, 2)
    first = await spool.read("a", 1)
    await spool.read("a", 10)  # handed to the worker a reload then stops: never acked
    await spool.ack("a", first)
    await spool.attach("a")  # the backend changed: a new worker starts
    assert [e.body for e in await spool.read("a", 10)] == bodies(2, 1)


async def test_the_oldest_event_age_metric_covers_a_redis_spool(
    prefix: str, aiohttp_client: Any
) -> None:
    body = (
        "backends: {held: {type: router.testing:MockBackend, when: {field: never, exists: true}}}\n"
    )
    client = await aiohttp_client(create_app(loads(router_config(prefix, "a", body))))
    old = {
        "uuid": str(uuid.uuid4()),
        "received_at": "2020-01-01T00:00:00.000Z",
        "event": "beacon",
        "data": {},
    }
    await client.app[ROUTER].spool.append([json.dumps(old).encode()])
    text = await (await client.get("/metrics")).text()
    assert metric(text, "beacon_router_spool_oldest_event_age_seconds", backend="held") > 86400
