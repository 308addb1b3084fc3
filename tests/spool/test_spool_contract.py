"""The spool contract (router/spool/base.py), pinned once and run against every spool.

SQLite runs on a real file in tmp_path; Redis on the real server at 127.0.0.1:6379 under a key
prefix of its own, deleted afterwards. What only one of them does is tested beside it
(test_sqlite_spool.py, test_redis_spool.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from support import require_service

from router.errors import Unavailable
from router.spool import Spool, SqliteSpool
from router.spool.redis import RedisSpool

REDIS_URL = "redis://127.0.0.1:6379/0"


def bodies(n: int, start: int = 0) -> list[bytes]:
    return [f'{{"n": {i}}}'.encode() for i in range(start, start + n)]


class Store:
    """One SQLite file or one Redis key prefix; every ``open`` is another process on it."""

    def __init__(self, kind: str, path: str, prefix: str) -> None:
        self.kind, self.path, self.prefix = kind, path, prefix
        self.opened: list[Spool] = []

    async def open(self, backends: tuple[str, ...] = ("a", "b"), full: bool = False) -> Any:
        """A spool on this store; ``full=True`` sets a limit a few hundred events reach."""
        spool: Spool
        if self.kind == "sqlite":
            spool = SqliteSpool(self.path, **({"max_size": 64 * 1024} if full else {}))
        else:
            spool = RedisSpool(REDIS_URL, key_prefix=self.prefix, max_events=50 if full else None)
        await spool.open(list(backends))
        self.opened.append(spool)
        return spool

    async def restart(self, spool: Spool, **kw: Any) -> Any:
        """Close ``spool`` and open the store again, as a restarted router does."""
        await self.close(spool)
        return await self.open(**kw)

    async def close(self, spool: Spool) -> None:
        self.opened.remove(spool)
        await spool.close()

    async def cleanup(self) -> None:
        for spool in list(self.opened):
            await self.close(spool)
        if self.kind == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            keys = [key async for key in client.scan_iter(match=f"{self.prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    if request.param == "redis":
        require_service("Redis", "127.0.0.1", 6379)
    s = Store(request.param, str(tmp_path / "spool.db"), f"test:{uuid.uuid4().hex}")
    yield s
    await s.cleanup()


async def test_appended_events_are_readable_after_a_restart(store):
    spool = await store.open()
    await spool.append(bodies(3))
    spool = await store.restart(spool)
    assert [e.body for e in await spool.read("a", 10)] == bodies(3)


async def test_concurrent_appends_are_all_stored_once(store):
    spool = await store.open()
    await asyncio.gather(*(spool.append([b]) for b in bodies(300)))
    assert await spool.depth("a") == 300
    got = await spool.read("a", 1000)
    assert sorted(e.body for e in got) == sorted(bodies(300))


async def test_each_backend_reads_every_event_at_its_own_position(store):
    spool = await store.open()
    await spool.append(bodies(10))
    a1 = await spool.read("a", 4)
    a2 = await spool.read("a", 100)
    b1 = await spool.read("b", 100)
    assert [e.body for e in a1 + a2] == bodies(10)
    assert [e.body for e in b1] == bodies(10)
    assert await spool.read("a", 100) == []


async def test_unacked_entries_come_back_after_a_restart(store):
    spool = await store.open()
    await spool.append(bodies(10))
    await spool.ack("a", await spool.read("a", 4))
    await spool.read("a", 6)  # handed out, never acked: a crash mid-send
    spool = await store.restart(spool)
    assert [e.body for e in await spool.read("a", 100)] == bodies(6, start=4)
    assert [e.body for e in await spool.read("b", 100)] == bodies(10)


async def test_acks_out_of_order_lose_nothing_and_reach_zero_depth(store):
    spool = await store.open(backends=("a",))
    await spool.append(bodies(6))
    first, second = await spool.read("a", 3), await spool.read("a", 3)
    await spool.ack("a", second)  # concurrency > 1: a later batch finishes first
    assert await spool.depth("a") >= 3
    spool = await store.restart(spool, backends=("a",))
    again = await spool.read("a", 100)
    assert {e.body for e in first} <= {e.body for e in again}
    await spool.ack("a", again)
    assert await spool.depth("a") == 0


async def test_depth_counts_what_each_backend_has_not_acked(store):
    spool = await store.open()
    await spool.append(bodies(5))
    await spool.ack("a", await spool.read("a", 3))
    assert await spool.depth("a") == 2
    assert await spool.depth("b") == 5


async def test_backend_added_later_starts_at_the_end(store):
    spool = await store.open(backends=("a",))
    await spool.append(bodies(5))
    spool = await store.restart(spool, backends=("a", "new"))
    assert await spool.read("new", 10) == []
    await spool.append(bodies(1, start=5))
    assert [e.body for e in await spool.read("new", 10)] == bodies(1, start=5)


async def test_wait_returns_when_events_arrive(store):
    spool = await store.open()
    assert await spool.read("a", 10) == []
    waiter = asyncio.create_task(spool.wait("a", 30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await spool.append(bodies(1))
    await asyncio.wait_for(waiter, 5)
    assert [e.body for e in await spool.read("a", 10)] == bodies(1)


async def test_wait_returns_after_the_timeout_when_nothing_arrives(store):
    spool = await store.open()
    await asyncio.wait_for(spool.wait("a", 0.05), 5)
    assert await spool.read("a", 10) == []


async def test_dead_letters_keep_reason_and_attempts_once_per_event(store):
    spool = await store.open()
    await spool.append(bodies(2))
    entries = await spool.read("a", 2)
    await spool.dead_letter("a", [(entries[0], "HTTP 400: bad event")], attempts=3)
    await spool.dead_letter("a", [(entries[0], "again")], attempts=4)
    dead = await spool.dead_letters("a")
    assert [(d.body, d.reason, d.attempts) for d in dead] == [
        (bodies(1)[0], "HTTP 400: bad event", 3)
    ]
    assert await spool.dead_letters("b") == []
    assert await spool.dead_letter_counts() == {"a": 1}


async def test_replayed_dead_letters_go_to_that_backend_only(store):
    spool = await store.open()
    await spool.append(bodies(2))
    entries = await spool.read("a", 2)
    await spool.dead_letter("a", [(entries[1], "HTTP 400")], attempts=1)
    await spool.ack("a", entries)
    await spool.ack("b", await spool.read("b", 2))

    assert await spool.replay("a") == 1
    assert [e.body for e in await spool.read("a", 10)] == bodies(1, start=1)
    assert await spool.read("b", 10) == []
    assert await spool.dead_letters("a") == []


async def test_purge_deletes_only_the_chosen_dead_letters(store):
    spool = await store.open()
    await spool.append(bodies(3))
    entries = await spool.read("a", 3)
    await spool.dead_letter("a", [(e, "HTTP 400") for e in entries], attempts=1)
    first, *rest = await spool.dead_letters("a")
    assert await spool.purge("a", ids=[first.id]) == 1
    assert [d.id for d in await spool.dead_letters("a")] == [d.id for d in rest]
    assert await spool.purge("a") == 2
    assert await spool.dead_letter_counts() == {}


async def test_queues_list_backends_no_longer_configured(store):
    spool = await store.open(backends=("a", "old"))
    await spool.append(bodies(4))
    spool = await store.restart(spool, backends=("a",))
    queues = await spool.queues()
    assert queues["old"] == 4
    assert queues["a"] == 4


async def test_full_spool_rejects_with_retry_after_and_keeps_what_it_has(store):
    spool = await store.open(full=True)
    with pytest.raises(Unavailable) as info:
        for i in range(1000):
            await spool.append([b"x" * 400 + str(i).encode()])
    assert info.value.retry_after
    stored = await spool.depth("a")
    assert stored > 0
    assert not await spool.writable()
    spool = await store.restart(spool)
    assert len(await spool.read("a", 10_000)) == stored
    assert await spool.writable()


async def test_purge_with_release_queue_forgets_a_removed_backend(store):
    empty = await store.open(backends=())  # what `beacon-router dlq` opens, on a new store
    assert await empty.purge("never-configured", release_queue=True) == 0
    await store.close(empty)
    spool = await store.open(backends=("a", "old"))
    await spool.append(bodies(2))
    spool = await store.restart(spool, backends=("a",))
    assert await spool.purge("old", release_queue=True) == 0
    assert "old" not in await spool.queues()
