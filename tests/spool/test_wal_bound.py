"""The SQLite spool's WAL stays within its limit while readers keep coming (spool/diskspace.py).

SQLite checkpoints the WAL at ``wal_max`` but can start it over only when no reader is inside
it. The delivery side reads after every commit, so before the bound the WAL grew to nearly
twice ``wal_max``, past the margin a disk that has just recovered keeps (the likely cause of a
tests/faults/test_disk_full.py failure in CI). Here a real reader connection on the same file
reads in a loop, as the delivery process does, while the ingest side commits beacon after beacon.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

from router.spool import SqliteSpool

RESERVE = 256 * 1024  # wal_max 256 KiB (64 pages), margin 64 KiB: wal_limit 320 KiB


def keep_reading(path: str, stop: threading.Event, reads: list[int]) -> None:
    """A delivery-like reader: short read transactions, one after another."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        while not stop.is_set():
            conn.execute("BEGIN")
            reads.append(conn.execute("SELECT count(*) FROM events").fetchone()[0])
            time.sleep(0.005)
            conn.execute("COMMIT")
            time.sleep(0.001)
    finally:
        conn.close()


async def test_the_wal_stays_within_its_limit_while_a_reader_keeps_reading(tmp_path):
    path = str(tmp_path / "spool.db")
    spool = SqliteSpool(path, role="ingest", reserve=RESERVE)
    await spool.open(["a"])
    limit = spool._disk.wal_limit
    stop, reads = threading.Event(), []
    reader = threading.Thread(target=keep_reading, args=(path, stop, reads))
    reader.start()
    largest = 0
    try:
        for i in range(600):  # ~1.2 MB of beacons, one commit each: the WAL turns over often
            await spool.append([b'{"n": %d, "pad": "%s"}' % (i, b"x" * 2000)])
            largest = max(largest, os.path.getsize(path + "-wal"))
        reader_alive_to_the_end = reader.is_alive()
    finally:
        stop.set()
        await asyncio.to_thread(reader.join)
        await spool.close()
    assert reader_alive_to_the_end and reads and reads[-1] > 0, "the reader must read throughout"
    # The commit that crosses the limit is written before the restart: one group beyond it.
    assert largest <= limit + 64 * 1024, f"the WAL grew to {largest} bytes, limit {limit}"
