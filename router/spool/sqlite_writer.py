"""The SQLite spool's writer thread: group commit, and compaction between the groups.

Every write of :class:`~router.spool.sqlite.SqliteSpool` goes through one thread that folds the
operations waiting at the same moment into one transaction and one fsync; between groups it
compacts (spool/sqlite_compaction.py: deletes what every backend has acked, in chunks, gives
free pages back to the disk, bounds the WAL, recovers from a full disk).
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ..errors import Unavailable
from ..logs import Throttled
from .one_thread import settle
from .sqlite_compaction import BUSY_TIMEOUT_MS, SpoolCompaction

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=10.0)

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
_COMPACT_EVERY = 0.5         # seconds between compaction passes
MAX_GROUP = 4096            # operations folded into one transaction at most
# Rows per INSERT statement: one multi-row INSERT costs a third less CPU than executemany()
# with a tuple per row (bench/README.md, "spool").
_ROWS_PER_INSERT = 256       # 256 parameters: well under SQLite's 999 on any version
RETRY_AFTER_FULL = 30.0     # what a full spool tells clients (seconds)
RETRY_AFTER_DISK = 10.0     # what a full disk tells clients: it clears as delivery drains

@dataclass(slots=True)  # one per append: no per-instance dict to build
class Op:
    """One unit of work for the writer thread; ``done`` is resolved on the event loop."""

    kind: str
    args: tuple[Any, ...]
    done: asyncio.Future[Any] | None = None
    result: Any = None


class SpoolWriter(SpoolCompaction):
    """The writer-thread half of :class:`~router.spool.sqlite.SqliteSpool`."""

    # role, max_size, used_bytes, dropped_when_full, _disk, _measured_at: SpoolCompaction's
    path: str
    when_full: str
    synchronous: str
    dead_letter_id_base: int
    last_id: int
    _loop: asyncio.AbstractEventLoop | None
    _ops: queue.SimpleQueue[Op | None]
    _readers: dict[str, Any]  # backend → its sqlite.Reader
    _writer: threading.Thread | None
    _failure: str | None
    wake_fd: int | None  # ingest role: one byte here per commit wakes the delivery process

    def _connect(self) -> sqlite3.Connection:
        # One prepared INSERT per row count (1 to _ROWS_PER_INSERT): keep them all cached.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               cached_statements=_ROWS_PER_INSERT + 64)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
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
                settle, started, None, Unavailable(f"cannot open spool {self.path}: {exc}"))
            self._writer = None
            return
        self._loop.call_soon_threadsafe(settle, started, positions, None)
        last_compaction = 0.0
        behind = False
        stopping = False
        while not stopping:
            try:
                # Behind on compaction: do not sleep between chunks when nothing else comes.
                op = self._ops.get(timeout=0.001 if behind else _COMPACT_EVERY)
            except queue.Empty:
                op = Op("idle", ())
            group: list[Op] = []
            while True:
                if op is None:
                    stopping = True
                else:
                    group.append(op)
                if len(group) >= MAX_GROUP:
                    break
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    break
            self._commit(conn, group)
            if self._disk.wal_bytes > self._disk.wal_limit and not self._disk.full:
                self._restart_wal(conn)  # while full, compaction truncates it (_reclaim)
            if self.role == "ingest":  # the delivery process compacts, and so frees room
                self._disk.sync(self.role)
                continue
            # One chunk per pass while behind (between write groups, so ingest never waits
            # long), else one check every _COMPACT_EVERY.
            if behind or time.monotonic() - last_compaction >= _COMPACT_EVERY:
                self._disk.sync(self.role)  # another process may have filled the disk
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

    def _commit(self, conn: sqlite3.Connection, group: list[Op]) -> None:
        work = [op for op in group if op.kind != "idle"]
        if self._disk.full:  # appends that were queued before the disk filled
            refused = [op for op in work if op.kind == "append"]
            self._resolve(refused, Unavailable("the spool's disk is full; try later",
                                               retry_after=RETRY_AFTER_DISK))
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
        if appended and self.wake_fd is not None:
            with contextlib.suppress(OSError):  # a full pipe: the reader has bytes to read
                os.write(self.wake_fd, b"\0")
        self._resolve(work, None, notify=appended)

    def _resolve(self, work: list[Op], error: Exception | None, notify: bool = False) -> None:
        waiting = [op for op in work if op.done is not None]
        if not waiting and not notify:
            return
        assert self._loop is not None
        # RuntimeError: the loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle_all, waiting, error, notify)

    def _settle_all(self, waiting: list[Op], error: Exception | None, notify: bool) -> None:
        for op in waiting:
            assert op.done is not None
            settle(op.done, op.result, error)
        if notify:
            for reader in self._readers.values():
                reader.arrived.set()


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
