"""Several backends reading one SQLite spool share what was read lately (spool/sqlite.py,
``_Recent``): whatever the interleaving of their reads, acks and the log's growth, each backend
must be handed exactly the rows the file holds for it, in order, once per read position."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import pytest

from router.spool import SqliteSpool
from router.spool import sqlite as spool_sqlite


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "spool.db")


def expected(path, backend):
    with sqlite3.connect(path) as conn:
        return [(i, bytes(b)) for i, b in conn.execute(
            "SELECT id, body FROM events WHERE target IS NULL OR target = ? ORDER BY id",
            (backend,))]


@pytest.mark.parametrize("seed", range(6))
async def test_interleaved_reads_hand_each_backend_its_rows_in_order(path, seed, monkeypatch):
    monkeypatch.setattr(spool_sqlite, "RECENT_ROWS", 50)  # small: a lagging reader falls out
    rng = random.Random(seed)
    backends = ["a", "b", "c"]
    spool = SqliteSpool(path)
    await spool.open(backends)
    got: dict[str, list[tuple[int, bytes]]] = {b: [] for b in backends}
    try:
        n = 0
        for _ in range(120):
            action = rng.random()
            if action < 0.3:
                count = rng.randint(1, 30)
                await spool.append([b'{"n":%d}' % (n + i) for i in range(count)])
                n += count
            elif action < 0.35:  # a dead letter replayed for one backend only
                target = rng.choice(backends)
                with sqlite3.connect(path) as conn:
                    conn.execute("INSERT INTO events (body, target) VALUES (?, ?)",
                                 (b'{"for":"%s"}' % target.encode(), target))
            else:
                backend = rng.choice(backends)
                reads = [spool.read(backend, rng.randint(1, 40))]
                if rng.random() < 0.3:  # two backends' reads under way at once
                    other = rng.choice([b for b in backends if b != backend])
                    reads.append(spool.read(other, rng.randint(1, 40)))
                    names = [backend, other]
                else:
                    names = [backend]
                for name, entries in zip(names, await asyncio.gather(*reads), strict=True):
                    got[name].extend((int(e.id), e.body) for e in entries)
                    if entries and rng.random() < 0.7:
                        await spool.ack(name, entries)
        for backend in backends:  # the rest, to the end of the log
            while entries := await spool.read(backend, 1000):
                got[backend].extend((int(e.id), e.body) for e in entries)
        for backend in backends:
            assert got[backend] == expected(path, backend), backend
    finally:
        await spool.close()


async def test_rows_are_selected_once_for_all_backends(path):
    spool = SqliteSpool(path)
    await spool.open(["a", "b"])
    selects = []
    select_all = spool._select_all

    def counting(after, limit):
        rows = select_all(after, limit)
        selects.append(len(rows))
        return rows

    spool._select_all = counting
    try:
        await spool.append([b'{"n":%d}' % i for i in range(100)])
        first = await spool.read("a", 100)
        second = await spool.read("b", 100)
        assert [e.body for e in second] == [e.body for e in first]
        assert sum(selects) == 100  # the second backend's read came from memory
        await spool.ack("a", first)
        await spool.ack("b", second)
        assert spool._recent.ids == []  # every backend is past them: nothing kept
    finally:
        await spool.close()
