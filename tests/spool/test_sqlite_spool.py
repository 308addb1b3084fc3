"""The SQLite spool against a real file: durability, per-backend positions, compaction, limits."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from router.errors import Unavailable
from router.spool import SqliteSpool


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "spool.db")


async def opened(path, backends=("a", "b"), **kw) -> SqliteSpool:
    spool = SqliteSpool(path, **kw)
    await spool.open(list(backends))
    return spool


def bodies(n, start=0):
    return [f'{{"n": {i}}}'.encode() for i in range(start, start + n)]


async def test_appended_events_are_in_the_file_when_append_returns(path):
    spool = await opened(path)
    await spool.append(bodies(3))
    # A separate connection sees them: they are committed, not buffered in the process.
    rows = sqlite3.connect(path).execute("SELECT body FROM events ORDER BY id").fetchall()
    assert [r[0] for r in rows] == bodies(3)
    await spool.close()


async def test_concurrent_appends_are_all_stored_once(path):
    spool = await opened(path)
    await asyncio.gather(*(spool.append([b]) for b in bodies(500)))
    assert await spool.depth("a") == 500
    got = await spool.read("a", 1000)
    assert sorted(e.body for e in got) == sorted(bodies(500))
    await spool.close()


async def test_each_backend_reads_every_event_at_its_own_position(path):
    spool = await opened(path)
    await spool.append(bodies(10))
    a1 = await spool.read("a", 4)
    a2 = await spool.read("a", 100)
    b1 = await spool.read("b", 100)
    assert [e.body for e in a1 + a2] == bodies(10)
    assert [e.body for e in b1] == bodies(10)
    assert await spool.read("a", 100) == []
    await spool.close()


async def test_unacked_entries_come_back_after_reopen(path):
    spool = await opened(path)
    await spool.append(bodies(10))
    first = await spool.read("a", 4)
    await spool.ack("a", first)
    await spool.read("a", 6)  # handed out, never acked: a crash mid-send
    await spool.close()

    spool = await opened(path)
    again = await spool.read("a", 100)
    assert [e.body for e in again] == bodies(6, start=4)
    assert [e.body for e in await spool.read("b", 100)] == bodies(10)
    await spool.close()


async def test_cursor_moves_only_past_contiguous_acked_reads(path):
    spool = await opened(path, backends=["a"])
    await spool.append(bodies(6))
    first, second = await spool.read("a", 3), await spool.read("a", 3)
    await spool.ack("a", second)  # out of order (concurrency > 1)
    assert await spool.depth("a") == 6
    await spool.ack("a", first)
    assert await spool.depth("a") == 0
    await spool.close()


async def test_rows_every_backend_acked_are_compacted(path):
    spool = await opened(path)
    await spool.append(bodies(100))
    await spool.ack("a", await spool.read("a", 100))
    await asyncio.sleep(0.7)
    count = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]
    assert count == 100, "b has not acked: nothing may be deleted"
    await spool.ack("b", await spool.read("b", 60))
    for _ in range(50):
        await asyncio.sleep(0.1)
        count = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]
        if count == 40:
            break
    assert count == 40
    await spool.close()


async def test_backend_added_later_starts_at_the_end(path):
    spool = await opened(path, backends=["a"])
    await spool.append(bodies(5))
    await spool.close()
    spool = await opened(path, backends=["a", "new"])
    assert await spool.read("new", 10) == []
    await spool.append(bodies(1, start=5))
    assert [e.body for e in await spool.read("new", 10)] == bodies(1, start=5)
    await spool.close()


async def test_wait_returns_when_events_arrive(path):
    spool = await opened(path)
    assert await spool.read("a", 10) == []
    waiter = asyncio.create_task(spool.wait("a", 30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await spool.append(bodies(1))
    await asyncio.wait_for(waiter, 5)
    await spool.close()


async def test_dead_letters_keep_reason_and_attempts(path):
    spool = await opened(path)
    await spool.append(bodies(2))
    entries = await spool.read("a", 2)
    await spool.dead_letter("a", [(entries[0], "HTTP 400: bad event")], attempts=3)
    await spool.dead_letter("a", [(entries[0], "again")], attempts=4)  # once per event
    dead = await spool.dead_letters("a")
    got = [(d.body, d.reason, d.attempts) for d in dead]
    assert got == [(bodies(1)[0], "HTTP 400: bad event", 3)]
    assert await spool.dead_letters("b") == []
    await spool.close()


async def test_full_spool_rejects_with_retry_after_and_keeps_what_it_has(path):
    spool = await opened(path, max_size=64 * 1024, when_full="reject")
    with pytest.raises(Unavailable) as info:
        for i in range(1000):
            await spool.append([b"x" * 400 + str(i).encode()])
    assert info.value.retry_after
    stored = await spool.depth("a")
    assert stored > 0
    assert not await spool.writable()
    await spool.close()
    spool = await opened(path, max_size=64 * 1024)
    assert len(await spool.read("a", 10_000)) == stored
    await spool.close()


async def test_full_spool_with_drop_oldest_keeps_newest(path):
    spool = await opened(path, max_size=64 * 1024, when_full="drop_oldest")
    for i in range(1000):
        await spool.append([b"x" * 400 + str(i).encode()])
    assert spool.dropped_when_full > 0
    got = await spool.read("a", 10_000)
    assert got[-1].body.endswith(b"999")
    assert len(got) < 1000
    await spool.close()


async def test_unwritable_location_fails_open_with_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(Unavailable, match="cannot open spool"):
        await opened(str(blocker / "spool.db"))
