"""What only the SQLite spool does, against a real file: commits visible to other connections,
cursor positions, compaction, drop_oldest. The shared contract is in test_spool_contract.py."""

from __future__ import annotations

import asyncio
import os
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


async def test_a_worker_filling_a_batch_is_woken_once_the_rest_of_it_is_in(path):
    spool = await opened(path, backends=["a"])
    assert await spool.read("a", 10) == []
    waiter = asyncio.create_task(spool.wait("a", 30, at_least=5))
    await spool.append(bodies(3))  # committed, and the reader told: still short of 5
    await asyncio.sleep(0.05)  # time for the waiter to see that commit's wake-up
    assert not waiter.done()
    await spool.append(bodies(2, start=3))
    await asyncio.wait_for(waiter, 5)
    assert [e.body for e in await spool.read("a", 10)] == bodies(5)
    await spool.close()



async def test_the_spool_holds_its_reserve_beside_it_and_none_when_it_is_0(path, tmp_path):
    spool = await opened(path, reserve=256 * 1024)
    assert os.stat(path + ".reserve").st_blocks * 512 >= 256 * 1024  # allocated, not sparse
    await spool.close()
    other = str(tmp_path / "other.db")
    spool = await opened(other, reserve=0)
    assert not os.path.exists(other + ".reserve")
    await spool.close()


async def test_a_drained_backlog_gives_its_space_back_down_to_the_pages_kept_for_reuse(path):
    spool = await opened(path, backends=("a",), reserve=0)
    for _ in range(12):
        await spool.append([b"x" * 1000] * 1000)
    grown = os.path.getsize(path)
    assert grown > 12_000_000
    while entries := await spool.read("a", 1000):
        await spool.ack("a", entries)
    for _ in range(200):  # compaction runs in the writer thread, between writes
        if os.path.getsize(path) <= 2048 * 4096 + 64 * 4096:
            break
        await asyncio.sleep(0.05)
    await spool.close()
    assert os.path.getsize(path) <= 2048 * 4096 + 64 * 4096  # the free pages it keeps, a few


@pytest.mark.parametrize("sizes", [[700] * 50, [20_000] * 50, [700, 90_000, 700, 300] * 12])
async def test_a_compaction_chunk_is_the_longest_run_of_rows_within_a_quarter_reserve(
        path, sizes):
    # Whole when it fits (found with a plain sum), else cut by the running sum: either way the
    # longest run from the first row whose bytes stay within the bound.
    reserve = 256 * 1024
    spool = SqliteSpool(path, reserve=reserve)
    await spool.open(["a"])
    await spool.append([b"x" * n for n in sizes])
    await spool.close()
    bound = max(64 * 1024, reserve // 4)
    conn = sqlite3.connect(path)
    try:
        for first, last in ((1, len(sizes)), (5, 30), (len(sizes), len(sizes))):
            run, expected = 0, first
            for i in range(first, last + 1):
                run += sizes[i - 1] + 64
                if run > bound:
                    break
                expected = i
            assert spool._chunk_end(conn, first, last) == expected, (first, last)
    finally:
        conn.close()
