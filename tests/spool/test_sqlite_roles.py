"""One SQLite spool file shared by an ingest side and a delivery side (``serve --delivery
process``), here as two spool objects on one real file: each has its own writer thread and
connections, exactly as the two processes have."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from router.spool import SqliteSpool


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "spool.db")


def bodies(n, start=0):
    return [f'{{"n": {i}}}'.encode() for i in range(start, start + n)]


async def pair(path, backends=("a",)):
    ingest = SqliteSpool(path, role="ingest")
    await ingest.open(list(backends))
    delivery = SqliteSpool(path, role="delivery")
    await delivery.open(list(backends))
    return ingest, delivery


async def test_a_wake_up_byte_tells_the_delivery_side_of_new_rows_at_once(path):
    ingest, delivery = await pair(path)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    ingest.wake_fd = write_end

    def woken():
        os.read(read_end, 4096)
        delivery.refresh_soon()

    asyncio.get_running_loop().add_reader(read_end, woken)
    try:
        waiter = asyncio.create_task(delivery.wait("a", timeout=30.0))
        await ingest.append(bodies(3))
        await asyncio.wait_for(waiter, 5.0)  # woken by the byte (the poll would do too)
        entries = await delivery.read("a", 10)
        assert [e.body for e in entries] == bodies(3)
    finally:
        asyncio.get_running_loop().remove_reader(read_end)
        await delivery.close()
        await ingest.close()
        os.close(read_end)
        os.close(write_end)


async def test_without_a_wake_up_the_poll_finds_new_rows(path):
    ingest, delivery = await pair(path)
    try:
        await ingest.append(bodies(2))
        await delivery.wait("a", timeout=10.0)
        assert len(await delivery.read("a", 10)) == 2
        assert await delivery.depth("a") == 2
    finally:
        await delivery.close()
        await ingest.close()


async def test_at_least_holds_the_delivery_side_until_enough_rows_arrived(path):
    ingest, delivery = await pair(path)
    try:
        await ingest.append(bodies(1))
        await delivery.wait("a", timeout=10.0)
        first = await delivery.read("a", 10)
        waiter = asyncio.create_task(delivery.wait("a", timeout=30.0, at_least=4))
        for i in range(4):
            await ingest.append(bodies(1, start=1 + i))
            await asyncio.sleep(0.3)  # past a poll: each arrival is seen, none is enough
            assert not waiter.done() or i == 3
        await asyncio.wait_for(waiter, 5.0)
        assert len(first) + len(await delivery.read("a", 10)) == 5
    finally:
        await delivery.close()
        await ingest.close()


async def test_only_the_delivery_side_compacts(path):
    ingest, delivery = await pair(path)
    try:
        await ingest.append(bodies(50))
        await delivery.wait("a", timeout=10.0)
        await delivery.ack("a", await delivery.read("a", 50))
        for _ in range(50):
            await asyncio.sleep(0.1)
            if not sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]:
                break
        assert sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0] == 0
        position = sqlite3.connect(path).execute(
            "SELECT position FROM cursors WHERE backend = 'a'").fetchone()[0]
        assert position == 50
    finally:
        await delivery.close()
        await ingest.close()


async def test_an_ingest_side_alone_keeps_every_row(path):
    ingest = SqliteSpool(path, role="ingest")
    await ingest.open(["a"])
    try:
        await ingest.append(bodies(5))
        # Its cursor was registered at open, before the first row: nothing is skipped later.
        row = sqlite3.connect(path).execute(
            "SELECT position FROM cursors WHERE backend = 'a'").fetchone()
        assert row == (0,)
        await asyncio.sleep(0.7)  # a compaction pass would have run by now
        assert sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0] == 5
    finally:
        await ingest.close()


def test_an_unknown_role_is_refused(path):
    with pytest.raises(ValueError, match="role"):
        SqliteSpool(path, role="reader")


def test_the_reserve_file_tells_each_side_whether_the_disk_is_full(tmp_path):
    from router.spool.diskspace import DiskGuard

    path = str(tmp_path / "spool.db")
    ingest, delivery = DiskGuard(path, 64 * 1024), DiskGuard(path, 64 * 1024)
    ingest.open()
    delivery.open()
    ingest.enter_full("test: no room")  # removes the reserve
    delivery.sync("delivery")
    assert delivery.full, "the compacting side must free space now"
    ingest.sync("ingest")
    assert ingest.full, "no reserve yet: still full"
    assert delivery.try_leave()  # room again: the delivery side makes the reserve again
    ingest.sync("ingest")
    assert not ingest.full


async def test_a_wake_up_during_a_look_makes_one_more_look(path):
    """The byte of a commit that lands while a look is under way (that look may have read the
    log just before it) is not swallowed: one more look follows, without waiting for a poll."""
    ingest, delivery = await pair(path)
    delivery._poller.cancel()  # only looks asked for by wake-ups from here on
    looked = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    query = delivery._query
    calls = []

    def slow_query(sql, params):
        rows = query(sql, params)
        calls.append(rows)
        if len(calls) == 1:  # the first look has read the log: now the commit lands
            loop.call_soon_threadsafe(looked.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return rows

    delivery._query = slow_query
    try:
        delivery.refresh_soon()
        await asyncio.wait_for(looked.wait(), 10)
        await ingest.append(bodies(2))
        delivery.refresh_soon()  # its wake-up, while the first look is still under way
        release.set()
        await asyncio.wait_for(delivery.wait("a", timeout=30.0), 10)
        assert len(await delivery.read("a", 10)) == 2
        assert len(calls) == 2
    finally:
        await delivery.close()
        await ingest.close()


async def test_a_worker_filling_a_batch_is_not_woken_by_each_commit(path):
    ingest, delivery = await pair(path)
    delivery._poller.cancel()
    try:
        waiter = asyncio.create_task(delivery.wait("a", timeout=30.0, at_least=3))
        await asyncio.sleep(0)
        reader = delivery._readers["a"]
        for i in range(2):
            await ingest.append(bodies(1, start=i))
            delivery.refresh_soon()
            await delivery._refresher
            assert delivery.last_id == i + 1
            assert not reader.arrived.is_set() and not waiter.done()
        await ingest.append(bodies(1, start=2))
        delivery.refresh_soon()
        await asyncio.wait_for(waiter, 10)
        assert len(await delivery.read("a", 10)) == 3
    finally:
        await delivery.close()
        await ingest.close()


def test_only_the_ingest_side_syncs_each_commit(path):
    # The delivery side's commits (cursors, dead letters, compaction) ride on the ingest side's
    # next fsync of the same WAL: their own held the write lock every ingest commit waits for.
    # A kill -9 of the delivery process still loses none of them (tests/serve/
    # test_delivery_process.py: at most the batches in flight are sent twice).
    assert SqliteSpool(path, role="ingest").synchronous == "FULL"
    assert SqliteSpool(path, role="both").synchronous == "FULL"
    assert SqliteSpool(path, role="delivery").synchronous == "NORMAL"
