"""The embedded spool: one SQLite file in WAL mode, written by one thread with group commit.

Every ``append`` from every request waiting at the same moment is written in one transaction
and one fsync (``synchronous=FULL``), so durability costs one disk flush per *group*, not per
request. Each backend has a cursor (the last id it acked); rows at or below every cursor are
deleted in small chunks between writes, so compaction never stalls ingest for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import Unavailable
from ..event import now_iso
from ..logs import Throttled
from .base import DeadLetter, Entry
from .diskspace import DiskGuard

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=10.0)

# sqlite3 binds int, float, str and bytearray as they are, but sends bytes (every event body)
# through its adaptation protocol, which looks up __adapt__ and __conform__ and raises and
# clears an AttributeError for each: ~2,500 instructions per body (CPython 3.11, callgrind).
# An adapter registered for bytes is found at once; bytes(b) returns b itself.
sqlite3.register_adapter(bytes, bytes)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so cursors stay valid
    body   BLOB NOT NULL,
    target TEXT                                -- NULL: every backend; else a DLQ replay for one
);
CREATE TABLE IF NOT EXISTS cursors (
    backend  TEXT PRIMARY KEY,
    position INTEGER NOT NULL               -- the highest id this backend has acked
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    backend   TEXT NOT NULL,
    event_id  INTEGER NOT NULL,
    body      BLOB NOT NULL,
    reason    TEXT NOT NULL,
    attempts  INTEGER NOT NULL,
    failed_at TEXT NOT NULL,
    UNIQUE (backend, event_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_backend ON dead_letters (backend, id);
"""
_COMPACT_CHUNK = 5000        # rows deleted per transaction: keeps each pause short
_COMPACT_EVERY = 0.5         # seconds between compaction passes
_KEEP_FREE_PAGES = 2048      # free pages kept in the file for reuse; beyond, given back
_MAX_GROUP = 4096            # operations folded into one transaction at most
# Rows per INSERT statement: one multi-row INSERT costs a third less CPU than executemany()
# with a tuple per row (bench/README.md, "spool").
_ROWS_PER_INSERT = 256       # 256 parameters: well under SQLite's 999 on any version
_RETRY_AFTER_FULL = 30.0     # what a full spool tells clients (seconds)
_RETRY_AFTER_DISK = 10.0     # what a full disk tells clients: it clears as delivery drains
# Bytes held back for compaction (spool/diskspace.py). 8 MiB keeps the WAL checkpoint at
# SQLite's default of 1,000 pages (half the reserve), so holding it costs ingest nothing.
DEFAULT_RESERVE = 8 * 1024 * 1024
_SQLITE_FULL = 13


@dataclass
class _Op:
    """One unit of work for the writer thread; ``done`` is resolved on the event loop."""

    kind: str
    args: tuple[Any, ...]
    done: asyncio.Future[Any] | None = None
    result: Any = None


@dataclass
class _Reader:
    """A backend's place in the log: durable cursor, what was handed out, batches in flight."""

    position: int
    handed_out: int
    inflight: deque[list[Any]] = field(default_factory=deque)  # [last_id, acked] per read
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class SqliteSpool:
    """A durable, multi-reader event log in one SQLite file (see the module docstring)."""

    def __init__(self, path: str, *, max_size: int | None = None,
                 when_full: str = "reject", synchronous: str = "FULL",
                 dead_letter_id_base: int = 0, reserve: int = DEFAULT_RESERVE) -> None:
        self.path = path
        self._disk = DiskGuard(path, reserve)
        # A worker's own file numbers its dead letters above this, so ids name their file
        # across the files of ``serve --workers`` (spool/shards.py).
        self.dead_letter_id_base = dead_letter_id_base
        self.max_size = max_size
        self.when_full = when_full
        self.synchronous = synchronous
        self.used_bytes = 0
        self._measured_at = 0.0
        self.last_id = 0
        self.dropped_when_full = 0
        self._readers: dict[str, _Reader] = {}
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._outbox: list[_Op] = []  # this event-loop pass's appends, handed over together
        self._writer: threading.Thread | None = None
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="spool-read")
        self._read_local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, backends: Sequence[str]) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot open spool {self.path}: {exc.strerror}") from exc
        started: asyncio.Future[dict[str, int]] = self._loop.create_future()
        self._writer = threading.Thread(target=self._write_loop, args=(list(backends), started),
                                        name="spool-writer", daemon=True)
        self._writer.start()
        positions = await started
        self._readers = {b: _Reader(position=p, handed_out=p) for b, p in positions.items()
                         if b in backends}
        orphaned = sorted(set(positions) - set(backends))
        if orphaned and backends:  # (an admin command opens the spool with no backends)
            log.warning("spool keeps events for backends no longer configured",
                        backends=orphaned, hint="beacon-router dlq purge --backend NAME")

    async def close(self) -> None:
        if self._writer is not None:
            self._flush_outbox()
            self._ops.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        await asyncio.get_running_loop().run_in_executor(self._read_pool, self._close_reader)
        self._read_pool.shutdown(wait=True)

    # -- ingest side -------------------------------------------------------------------------

    async def append(self, bodies: Sequence[bytes]) -> None:
        if self._writer is None:
            raise Unavailable("spool is not open", retry_after=5)
        if self._disk.full:  # refused here, before any write: see spool/diskspace.py
            raise Unavailable("the spool's disk is full; try later",
                              retry_after=_RETRY_AFTER_DISK)
        if self.max_size and self.used_bytes >= self.max_size and self.when_full == "reject":
            raise Unavailable(f"spool is full ({self.used_bytes} bytes, max_size "
                              f"{self.max_size}); try later", retry_after=_RETRY_AFTER_FULL)
        assert self._loop is not None
        done = self._loop.create_future()
        if not self._outbox:
            self._loop.call_soon(self._flush_outbox)
        self._outbox.append(_Op("append", (bodies,), done))
        await done

    def _flush_outbox(self) -> None:
        # Every append of one event-loop pass reaches the writer at once and so shares its
        # transaction and fsync. Handed over one by one, the writer woke for the first and
        # committed it alone: at a few thousand requests/s that made groups of one or two.
        outbox, self._outbox = self._outbox, []
        for op in outbox:
            self._ops.put(op)

    async def writable(self) -> bool:
        if (self._writer is None or not self._writer.is_alive() or self._failure
                or self._disk.full):
            return False
        return not (self.max_size and self.used_bytes >= self.max_size
                    and self.when_full == "reject")

    # -- delivery side -----------------------------------------------------------------------

    async def read(self, backend: str, limit: int) -> list[Entry]:
        reader = self._readers[backend]
        reader.arrived.clear()
        after = reader.handed_out
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._select, backend, after, limit)
        if rows:
            reader.handed_out = rows[-1][0]
            reader.inflight.append([reader.handed_out, False])
        return [Entry(row[0], row[1]) for row in rows]

    async def wait(self, backend: str, timeout: float, at_least: int = 1) -> None:
        # Each group commit wakes every reader. A worker filling a batch asks for the rest of
        # it (``at_least``) and is woken once that many are in the log, or at the deadline, so
        # it reads once per batch instead of once per commit.
        reader = self._readers[backend]
        deadline = time.monotonic() + timeout
        while True:
            if not reader.arrived.is_set():
                try:
                    await asyncio.wait_for(reader.arrived.wait(), deadline - time.monotonic())
                except TimeoutError:
                    return
            if at_least <= 1 or self.last_id - reader.handed_out >= at_least:
                return
            if time.monotonic() >= deadline:
                return
            # Not enough yet: wait for the next commit. (Whatever arrived stays unread and
            # is read when this returns; the flag only says when to look.)
            reader.arrived.clear()

    async def ack(self, backend: str, entries: Sequence[Entry]) -> None:
        """Mark entries handed out by ``read`` done; the cursor moves past contiguous done reads.

        ``entries`` may span several consecutive reads (a worker filling one batch)."""
        if not entries:
            return
        reader = self._readers[backend]
        first, last = min(int(e.id) for e in entries), max(int(e.id) for e in entries)
        for batch in reader.inflight:
            if first <= batch[0] <= last:
                batch[1] = True
        new_position = reader.position
        while reader.inflight and reader.inflight[0][1]:
            new_position = reader.inflight.popleft()[0]
        if new_position != reader.position:
            reader.position = new_position
            # Not awaited: a lost cursor update only means a redelivery (at-least-once).
            self._ops.put(_Op("cursor", (backend, new_position)))

    async def dead_letter(self, backend: str, entries: Sequence[tuple[Entry, str]],
                          attempts: int) -> None:
        if not entries:
            return
        assert self._loop is not None
        done = self._loop.create_future()
        rows = [(backend, int(e.id), e.body, reason[:1000], attempts, now_iso())
                for e, reason in entries]
        self._ops.put(_Op("dead", (rows,), done))
        await done

    async def depth(self, backend: str) -> int:
        return max(0, self.last_id - self._readers[backend].position)

    async def attach(self, backend: str) -> None:
        """Start reading for ``backend`` while open (a config reload): a new backend starts at
        the end of the log; a known one at its durable position, so entries handed to a worker
        that was stopped without acking them are handed out again."""

        def register(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            conn.execute("INSERT OR IGNORE INTO cursors (backend, position) VALUES (?, ?)",
                         (backend, row[0] if row else 0))
            return int(conn.execute("SELECT position FROM cursors WHERE backend = ?",
                                    (backend,)).fetchone()[0])

        position = await self._call(register)
        if (old := self._readers.get(backend)) is not None:
            position = max(position, old.position)  # a cursor update may still be queued
        self._readers[backend] = _Reader(position=position, handed_out=position)

    async def peek(self, backend: str) -> Entry | None:
        """The oldest entry ``backend`` has not acked (handed out or not), or None."""
        reader = self._readers[backend]
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._select, backend, reader.position, 1)
        return Entry(rows[0][0], rows[0][1]) if rows else None

    async def holds_nothing(self) -> bool:
        """No event kept for any backend and no dead letter: the file may be deleted."""
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._query,
            "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM dead_letters)", ())
        return not rows[0][0]

    # -- dead-letter queue (beacon-router dlq ...) -------------------------------------------

    async def dead_letters(self, backend: str, limit: int = 100, since: str | None = None
                           ) -> list[DeadLetter]:
        """Dead letters of ``backend``, oldest first; ``since`` is an ISO time lower bound."""
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._query,
            "SELECT id, backend, body, reason, attempts, failed_at FROM dead_letters "
            "WHERE backend = ? AND failed_at >= ? ORDER BY id LIMIT ?",
            (backend, since or "", limit))
        return [DeadLetter(*row) for row in rows]

    async def dead_letter_counts(self) -> dict[str, int]:
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._query,
            "SELECT backend, count(*) FROM dead_letters GROUP BY backend", ())
        return dict(rows)

    async def replay(self, backend: str, ids: Sequence[int] | None = None,
                     since: str | None = None) -> int:
        """Re-enqueue dead letters for ``backend`` only; returns how many."""
        where, params = _dlq_filter(backend, ids, since)

        def move(conn: sqlite3.Connection) -> int:
            conn.execute(f"INSERT INTO events (body, target) SELECT body, backend "
                         f"FROM dead_letters WHERE {where} ORDER BY id", params)
            return conn.execute(f"DELETE FROM dead_letters WHERE {where}", params).rowcount

        return int(await self._call(move, notify=True))

    async def purge(self, backend: str, ids: Sequence[int] | None = None,
                    since: str | None = None, *, release_queue: bool = False) -> int:
        """Delete dead letters of ``backend``; ``release_queue`` also forgets its cursor, so
        events kept only for a backend no longer configured can be compacted."""
        where, params = _dlq_filter(backend, ids, since)

        def delete(conn: sqlite3.Connection) -> int:
            count = conn.execute(f"DELETE FROM dead_letters WHERE {where}", params).rowcount
            if release_queue:
                conn.execute("DELETE FROM cursors WHERE backend = ?", (backend,))
            return int(count)

        return int(await self._call(delete))

    async def queues(self) -> dict[str, int]:
        """Every backend with a cursor in this spool (configured or not) and its queue depth."""
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._query, "SELECT backend, position FROM cursors", ())
        last = await asyncio.get_running_loop().run_in_executor(
            self._read_pool, self._query,
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'", ())
        top = last[0][0] if last else 0
        return {backend: max(0, top - position) for backend, position in rows}

    async def _call(self, fn: Any, notify: bool = False) -> Any:
        """Run ``fn(conn)`` in the writer's transaction and return its result."""
        if self._writer is None:
            raise Unavailable("spool is not open", retry_after=5)
        assert self._loop is not None
        done = self._loop.create_future()
        self._ops.put(_Op("call", (fn, notify), done))
        return await done

    # -- the writer thread -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # One prepared INSERT per row count (1 to _ROWS_PER_INSERT): keep them all cached.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               cached_statements=_ROWS_PER_INSERT + 64)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _write_loop(self, backends: list[str], started: asyncio.Future[dict[str, int]]) -> None:
        assert self._loop is not None
        try:
            conn = self._connect()
            # auto_vacuum must be chosen before the first table exists.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._bound_wal(conn)
            conn.executescript(_SCHEMA)
            conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'dead_letters', ? "
                          "WHERE ? > 0 AND NOT EXISTS (SELECT 1 FROM sqlite_sequence "
                          "WHERE name = 'dead_letters')",
                          (self.dead_letter_id_base, self.dead_letter_id_base))
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if "target" not in columns:  # a spool file from before DLQ replay existed
                conn.execute("ALTER TABLE events ADD COLUMN target TEXT")
            positions = self._register(conn, backends)
            self._measure(conn)
            self._disk.open()
        except sqlite3.Error as exc:
            self._loop.call_soon_threadsafe(
                _settle, started, None, Unavailable(f"cannot open spool {self.path}: {exc}"))
            self._writer = None
            return
        self._loop.call_soon_threadsafe(_settle, started, positions, None)
        last_compaction = 0.0
        behind = False
        stopping = False
        while not stopping:
            try:
                # Behind on compaction: do not sleep between chunks when nothing else comes.
                op = self._ops.get(timeout=0.001 if behind else _COMPACT_EVERY)
            except queue.Empty:
                op = _Op("idle", ())
            group: list[_Op] = []
            while True:
                if op is None:
                    stopping = True
                else:
                    group.append(op)
                if len(group) >= _MAX_GROUP:
                    break
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    break
            self._commit(conn, group)
            # One chunk per pass while behind (between write groups, so ingest never waits
            # long), else one check every _COMPACT_EVERY.
            if behind or time.monotonic() - last_compaction >= _COMPACT_EVERY:
                behind = self._compact(conn)
                last_compaction = time.monotonic()
                if self._disk.full and not behind:
                    self._reclaim(conn)
        conn.close()

    def _register(self, conn: sqlite3.Connection, backends: list[str]) -> dict[str, int]:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        self.last_id = row[0] if row else 0
        # A backend added later starts at the end: it sees new events, not an arbitrary tail.
        conn.executemany("INSERT OR IGNORE INTO cursors (backend, position) VALUES (?, ?)",
                         [(b, self.last_id) for b in backends])
        return dict(conn.execute("SELECT backend, position FROM cursors").fetchall())

    def _commit(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        work = [op for op in group if op.kind != "idle"]
        if self._disk.full:  # appends that were queued before the disk filled
            refused = [op for op in work if op.kind == "append"]
            self._resolve(refused, Unavailable("the spool's disk is full; try later",
                                               retry_after=_RETRY_AFTER_DISK))
            work = [op for op in work if op.kind != "append"]
        if not work:
            return
        appended = False
        last_inserted = 0  # our own rows' highest id; 0: ask the table (another writer added)
        try:
            conn.execute("BEGIN IMMEDIATE")
            bodies: list[bytes] = []  # consecutive appends: one multi-row INSERT
            for op in work:
                if op.kind == "append":
                    if self.max_size and self.when_full == "drop_oldest":
                        self._make_room(conn, sum(len(b) for b in op.args[0]))
                        last_inserted = _insert_bodies(conn, op.args[0]) or last_inserted
                    else:
                        bodies.extend(op.args[0])
                    appended = True
                    continue
                if bodies:
                    last_inserted = _insert_bodies(conn, bodies) or last_inserted
                    bodies = []
                if op.kind == "cursor":
                    conn.execute("UPDATE cursors SET position = ? WHERE backend = ?",
                                 (op.args[1], op.args[0]))
                elif op.kind == "dead":
                    conn.executemany(
                        "INSERT OR IGNORE INTO dead_letters "
                        "(backend, event_id, body, reason, attempts, failed_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", op.args[0])
                elif op.kind == "call":
                    op.result = op.args[0](conn)
                    if op.args[1]:
                        appended, last_inserted = True, -1
            if bodies:
                last_inserted = _insert_bodies(conn, bodies) or last_inserted
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not self._disk.full and self._out_of_space(exc):
                # Refuse the appends, free the reserve, and write the rest (cursor moves,
                # dead letters) again: those are what lets the disk drain.
                self._disk.enter_full(str(exc))
                self._commit(conn, work)
                return
            self._failure = str(exc)
            throttled("error", "spool write failed", error=str(exc), path=self.path)
            error = Unavailable(f"spool write failed: {exc}", retry_after=5)
            self._resolve(work, error)
            return
        self._failure = None
        if last_inserted > 0:  # AUTOINCREMENT, one writer: our last row is the highest id
            self.last_id = last_inserted
        elif appended:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            self.last_id = row[0] if row else self.last_id
        # used_bytes guards max_size, so then it is measured after every write; otherwise it
        # only feeds metrics and `status`, and twice a second is plenty (three statements).
        if self.max_size or time.monotonic() - self._measured_at >= _COMPACT_EVERY:
            self._measure(conn)
        self._disk.check()
        self._resolve(work, None, notify=appended)

    def _out_of_space(self, exc: sqlite3.Error) -> bool:
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        try:  # an I/O error may be ENOSPC under another name: ask the filesystem
            return self._disk.free_bytes() < self._disk.margin
        except OSError:
            return False

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        # A checkpoint copies the WAL into the main file, which may grow by as much: keep the
        # WAL within half the reserve, so freeing the reserve always covers one more
        # checkpoint, and truncate it back after each (spool/diskspace.py).
        if self._disk.reserve <= 0:
            return
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = max(64, min(1000, self._disk.reserve // 2 // page))  # 1000: SQLite's default
        conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        self._disk.wal_max = pages * page
        conn.execute(f"PRAGMA journal_size_limit = {self._disk.reserve}")

    def _chunk_end(self, conn: sqlite3.Connection, first: int, last: int) -> int:
        """The last id of a compaction chunk from ``first``: at most ``last``, and rows of at
        most a quarter of the reserve. Deleting a row rewrites its page into the WAL, so freeing
        N bytes first needs about N bytes of new WAL: a bounded chunk always fits in what the
        reserve frees (spool/diskspace.py)."""
        if self._disk.reserve <= 0:
            return last
        row = conn.execute(
            "SELECT max(id) FROM (SELECT id, sum(length(body) + 64) OVER (ORDER BY id) AS run "
            "FROM events WHERE id BETWEEN ? AND ?) WHERE run <= ?",
            (first, last, max(64 * 1024, self._disk.reserve // 4))).fetchone()
        return int(row[0]) if row and row[0] is not None else first

    def _vacuum_pages(self, conn: sqlite3.Connection) -> int:
        """Pages one incremental vacuum may move: each is written to the WAL once."""
        if self._disk.reserve <= 0:
            return 1024
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        return max(16, min(1024, self._disk.reserve // 4 // page))

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        """While the disk is full and compaction has caught up: return the freed pages to the
        filesystem, truncate the WAL, and resume ingest once the reserve fits again."""
        try:
            for _ in range(16):  # a few steps per pass, so a write never waits long
                _vacuum(conn, self._vacuum_pages(conn))
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                if not conn.execute("PRAGMA freelist_count").fetchone()[0]:
                    break
            self._measure(conn)
        except sqlite3.Error as exc:
            throttled("warning", "spool compaction on a full disk failed", error=str(exc))
        self._disk.try_leave()

    def _resolve(self, work: list[_Op], error: Exception | None, notify: bool = False) -> None:
        waiting = [op for op in work if op.done is not None]
        if not waiting and not notify:
            return
        assert self._loop is not None
        # RuntimeError: the loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle_all, waiting, error, notify)

    def _settle_all(self, waiting: list[_Op], error: Exception | None, notify: bool) -> None:
        for op in waiting:
            assert op.done is not None
            _settle(op.done, op.result, error)
        if notify:
            for reader in self._readers.values():
                reader.arrived.set()

    def _measure(self, conn: sqlite3.Connection) -> None:
        self._measured_at = time.monotonic()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        self.used_bytes = (pages - free) * page_size

    def _make_room(self, conn: sqlite3.Connection, incoming: int) -> None:
        """``when_full: drop_oldest``: delete the oldest events until ``incoming`` fits."""
        assert self.max_size is not None
        excess = self.used_bytes + incoming - self.max_size
        if excess <= 0:
            return
        rows = conn.execute("SELECT id, length(body) FROM events ORDER BY id LIMIT 10000")
        cut, freed, count = 0, 0, 0
        for event_id, size in rows:
            cut, freed, count = event_id, freed + size + 16, count + 1
            if freed >= excess:
                break
        if cut:
            conn.execute("DELETE FROM events WHERE id <= ?", (cut,))
            self.dropped_when_full += count
            self.used_bytes -= freed

    def _compact(self, conn: sqlite3.Connection) -> bool:
        """Delete one chunk of rows every backend has acked; True if more are left."""
        row = conn.execute("SELECT min(position) FROM cursors").fetchone()
        if row is None or row[0] is None:
            return False
        floor = row[0]
        first = conn.execute("SELECT min(id) FROM events").fetchone()[0]
        deleted = vacuumed = more = False
        try:
            if first is not None and first <= floor:
                upto = self._chunk_end(conn, first, min(floor, first + _COMPACT_CHUNK - 1))
                conn.execute("DELETE FROM events WHERE id <= ?", (upto,))
                deleted, more = True, upto < floor
            # Give space back to the OS, also once a drain has deleted everything: else the
            # file stays as large as the largest backlog it ever held.
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free > _KEEP_FREE_PAGES or (free and self._disk.full):
                pages = self._vacuum_pages(conn)
                _vacuum(conn, pages)
                vacuumed, more = True, more or free - pages > _KEEP_FREE_PAGES
            if not (deleted or vacuumed):
                return False  # nothing to delete or give back: no write at all
            if self._disk.full:  # the WAL's blocks are the ones to win back
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            elif vacuumed:  # the file itself shrinks only when a checkpoint copies the vacuum
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._measure(conn)
        except sqlite3.Error as exc:
            if not self._disk.full and self._out_of_space(exc):
                self._disk.enter_full(str(exc))  # frees the reserve: the next pass fits
                return True
            throttled("warning", "spool compaction failed", error=str(exc))
            return False
        return more

    # -- the reader thread -------------------------------------------------------------------

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._read_local, "conn", None)
        if conn is None:
            conn = self._read_local.conn = self._connect()
        return conn

    def _select(self, backend: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        return self._reader_conn().execute(
            "SELECT id, body FROM events WHERE id > ? AND (target IS NULL OR target = ?) "
            "ORDER BY id LIMIT ?", (after, backend, limit)).fetchall()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._reader_conn().execute(sql, params).fetchall()

    def _close_reader(self) -> None:
        conn = getattr(self._read_local, "conn", None)
        if conn is not None:
            conn.close()
            self._read_local.conn = None


def _vacuum(conn: sqlite3.Connection, pages: int) -> None:
    """Give up to ``pages`` free pages back to the OS (outside a transaction). Not execute():
    for a statement without result columns it steps once, and this pragma frees one page per
    step — the compaction here freed one page per pass for that reason."""
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")


def _insert_bodies(conn: sqlite3.Connection, bodies: Sequence[bytes]) -> int:
    """Append ``bodies`` as events, ``_ROWS_PER_INSERT`` rows per statement; the last id."""
    last = 0
    for start in range(0, len(bodies), _ROWS_PER_INSERT):
        chunk = bodies[start:start + _ROWS_PER_INSERT]
        last = conn.execute(_insert_sql(len(chunk)), chunk).lastrowid or last
    return last


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO events (body) VALUES " + ", ".join(["(?)"] * rows)


def _dlq_filter(backend: str, ids: Sequence[int] | None, since: str | None
                ) -> tuple[str, tuple[Any, ...]]:
    where = "backend = ?"
    params: list[Any] = [backend]
    if ids:
        where += f" AND id IN ({', '.join('?' * len(ids))})"
        params.extend(int(i) for i in ids)
    if since:
        where += " AND failed_at >= ?"
        params.append(since)
    return where, tuple(params)


def _settle(fut: asyncio.Future[Any], value: Any, error: Exception | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


