"""What only the Redis spool does, against the real Redis at 127.0.0.1:6379: taking over a dead
consumer's entries, keeping held ones, poison entries, trimming, lost groups, Redis unreachable.
The shared contract is in test_spool_contract.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from support import free_port, until

from router.config.loader import loads
from router.errors import ConfigError, Unavailable
from router.spool import create_spool
from router.spool.redis import RedisSpool

pytestmark = pytest.mark.redis
URL = "redis://127.0.0.1:6379/0"


def bodies(n: int, start: int = 0) -> list[bytes]:
    return [f'{{"n": {i}}}'.encode() for i in range(start, start + n)]


@pytest.fixture
async def raw() -> AsyncIterator[redis.Redis]:
    """A plain client, to play a router process that died holding entries."""
    client = redis.Redis.from_url(URL)
    yield client
    await client.aclose()


@pytest.fixture
async def spools(prefix) -> AsyncIterator[list[RedisSpool]]:
    opened: list[RedisSpool] = []
    yield opened
    for spool in opened:
        await spool.close()


async def start(spools, prefix, name, backends=("a",), **kw) -> RedisSpool:
    spool = RedisSpool(URL, key_prefix=prefix, consumer=name, **kw)
    await spool.open(list(backends))
    spools.append(spool)
    return spool




async def test_entries_a_dead_consumer_held_are_taken_over_after_claim_idle(spools, prefix, raw):
    spool = await start(spools, prefix, "alive", claim_idle=0.2)
    await spool.append(bodies(5))
    # A router process that read three entries and was killed before acking them.
    await raw.xreadgroup("a", "killed:1", {spool.stream: ">"}, count=3)
    got: list[bytes] = []

    async def all_read() -> bool:
        got.extend(e.body for e in await spool.read("a", 10))
        return sorted(got) == sorted(bodies(5))

    await until(all_read)
    pending = await raw.xpending(spool.stream, "a")
    assert [c["name"] for c in pending["consumers"]] == [b"alive"]


async def test_entries_a_live_instance_holds_are_not_taken_over(spools, prefix):
    holder = await start(spools, prefix, "holder", claim_idle=0.2)
    other = await start(spools, prefix, "other", claim_idle=0.2)
    await holder.append(bodies(3))
    held = await holder.read("a", 10)
    await asyncio.sleep(1.0)  # five times claim_idle: the holder's refreshes must keep them
    assert await other.read("a", 10) == []
    await holder.ack("a", held)
    assert await holder.depth("a") == 0


async def test_a_clean_stop_hands_held_entries_over_at_once_without_counting_a_delivery(
    spools, prefix, raw
):
    first = await start(spools, prefix, "first", claim_idle=30)
    await first.append(bodies(3))
    assert len(await first.read("a", 10)) == 3
    spools.remove(first)
    await first.close()
    second = await start(spools, prefix, "second", claim_idle=30)
    assert [e.body for e in await second.read("a", 10)] == bodies(3)
    pending = await raw.xpending_range(second.stream, "a", min="-", max="+", count=10)
    assert {p["times_delivered"] for p in pending} == {1}


async def test_poison_entries_go_to_the_dead_letters_instead_of_a_worker(spools, prefix, raw):
    spool = await start(spools, prefix, "alive", claim_idle=0.2, max_deliveries=3)
    await spool.append(bodies(2))
    reply = await raw.xreadgroup("a", "crashed:1", {spool.stream: ">"}, count=1)
    poison_id = reply[0][1][0][0]
    # Three routers already died on it: its delivery count says so.
    await raw.xclaim(spool.stream, "a", "crashed:3", 0, [poison_id], retrycount=3, justid=True)
    got: list[bytes] = []

    async def other_read() -> bool:
        got.extend(e.body for e in await spool.read("a", 10))
        return bool(await spool.dead_letters("a")) and bodies(1, start=1)[0] in got

    await until(other_read)
    assert bodies(1)[0] not in got
    [letter] = await spool.dead_letters("a")
    assert letter.body == bodies(1)[0]
    assert letter.attempts == 4
    assert "delivered 4 times without an ack" in letter.reason


async def test_stream_is_trimmed_only_below_what_every_group_acked(spools, prefix, raw):
    spool = await start(spools, prefix, "one", backends=("a", "b"))
    await spool.append(bodies(10))
    await spool.ack("a", await spool.read("a", 10))
    b_first = await spool.read("b", 4)
    b_rest = await spool.read("b", 10)
    await spool.ack("b", b_rest)  # b's oldest four are still unacked: nothing may go

    async def length_is(n: int):
        async def check() -> bool:
            return await raw.xlen(spool.stream) == n

        return check

    await asyncio.sleep(1.5)  # more than one maintenance pass
    assert await raw.xlen(spool.stream) == 10
    await spool.ack("b", b_first[2:])
    await spool.ack("b", b_first[:2])
    await until(await length_is(0))


async def test_a_lost_group_is_recreated_from_the_start_of_the_stream(spools, prefix, raw):
    spool = await start(spools, prefix, "one")
    await spool.append(bodies(2))
    await raw.xgroup_destroy(spool.stream, "a")  # as after a Redis restart without persistence
    await spool.append(bodies(1, start=2))
    got: list[bytes] = []

    async def all_read() -> bool:
        got.extend(e.body for e in await spool.read("a", 10))
        return len(got) >= 3

    await until(all_read)
    assert sorted(got) == sorted(bodies(3))


async def test_finishing_a_batch_whose_group_vanished_does_not_wait_forever(spools, prefix, raw):
    spool = await start(spools, prefix, "one")
    await spool.append(bodies(1))
    entries = await spool.read("a", 1)
    await raw.xgroup_destroy(spool.stream, "a")
    await asyncio.wait_for(spool.dead_letter("a", [(entries[0], "HTTP 400")], attempts=1), 5)
    await asyncio.wait_for(spool.ack("a", entries), 5)


async def test_unreachable_redis_is_unavailable_for_ingest_and_quiet_for_delivery():
    spool = RedisSpool(f"redis://127.0.0.1:{free_port()}/0", key_prefix="unused")
    await spool.open(["a"])  # does not raise: the router waits for Redis instead of exiting
    with pytest.raises(Unavailable) as info:
        await spool.append(bodies(1))
    assert info.value.retry_after
    assert "127.0.0.1" not in info.value.detail  # the client learns nothing of our network
    assert not await spool.writable()
    assert await spool.read("a", 10) == []
    await asyncio.wait_for(spool.wait("a", 0.1), 5)
    assert await spool.depth("a") == 0
    await spool.close()


async def test_spool_config_builds_a_redis_spool_with_its_keys(prefix):
    config = loads(f"""
spool:
  type: redis
  url: {URL}
  stream: events
  key_prefix: "{prefix}"
  consumer: router-7
  claim_idle: 5s
  max_events: 1000
""")
    spool = create_spool(config.spool)
    assert isinstance(spool, RedisSpool)
    assert (spool.stream, spool.consumer, spool.claim_idle, spool.max_events) == (
        f"{prefix}:events",
        "router-7",
        5.0,
        1000,
    )


@pytest.mark.parametrize(
    ("spool", "message"),
    [
        ("{type: redis}", "spool.url: required for type: redis"),
        (
            f"{{type: redis, url: '{URL}', when_full: drop_oldest}}",
            "only available with type: sqlite",
        ),
        ("{type: sqlite, max_events: 10}", "only available with type: redis"),
        (f"{{type: redis, url: '{URL}', key_prefix: 'a b'}}", "spool.key_prefix"),
    ],
)
def test_spool_config_refuses_keys_that_do_not_fit_the_spool_type(spool, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        loads(f"spool: {spool}")
