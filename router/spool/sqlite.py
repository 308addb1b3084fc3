"""The embedded spool: one SQLite file in WAL mode, written by one thread with group commit.

Every ``append`` from every request waiting at the same moment is written in one transaction
and one fsync (``synchronous=FULL``), so durability costs one disk flush per *group*, not per
request. Each backend has a cursor (the last id it acked); rows at or below every cursor are
deleted in small chunks between writes, so compaction never stalls ingest for long.

One file may be shared by two processes in two *roles* (``serve --delivery process``): the
ingest process only appends (``role="ingest"``: no readers, no compaction) and, after each
commit that added rows, writes one byte to ``wake_fd``; the delivery process reads, moves
cursors, dead-letters and compacts (``role="delivery"``). SQLite's WAL lets each side's short
transactions take turns (``busy_timeout``). The delivery side looks for new rows
(``refresh_soon``) when that byte arrives (router/serve/delivery_process.py watches the pipe)
and, as a fallback, polls the log's highest id every ``POLL_SECONDS``. ``role="both"`` is
the single process of ``--delivery inline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import starmap
from typing import Any

import structlog

from ..errors import Unavailable
from ..event import now_iso
from ..logs import Throttled
from .base import Entry
from .diskspace import DiskGuard
from .one_thread import OneThread
from .sqlite_dlq import SqliteDeadLetterCommands
from .sqlite_writer import RETRY_AFTER_DISK, RETRY_AFTER_FULL, Op, SpoolWriter

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=10.0)

# sqlite3 binds int, float, str and bytearray as they are, but sends bytes (every event body)
# through its adaptation protocol, which looks up __adapt__ and __conform__ and raises and
# clears an AttributeError for each: ~2,500 instructions per body (CPython 3.11, callgrind).
# An adapter registered for bytes is found at once; bytes(b) returns b itself.
sqlite3.register_adapter(bytes, bytes)

# Bytes held back for compaction (spool/diskspace.py). 8 MiB keeps the WAL checkpoint at
# SQLite's default of 1,000 pages (half the reserve), so holding it costs ingest nothing.
DEFAULT_RESERVE = 8 * 1024 * 1024
ROLES = ("both", "ingest", "delivery")
POLL_SECONDS = 0.25  # delivery role: how stale its view of the log may be without a wake-up



@dataclass
class _Reader:
    """A backend's place in the log: durable cursor, what was handed out, batches in flight."""

    position: int
    handed_out: int
    inflight: deque[list[Any]] = field(default_factory=deque)  # [last_id, acked] per read
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    wanted: int = 1  # how many new entries its ``wait`` holds on for (1 while not waiting)


class SqliteSpool(SpoolWriter, SqliteDeadLetterCommands):
    """A durable, multi-reader event log in one SQLite file (see the module docstring)."""

    def __init__(self, path: str, *, max_size: int | None = None,
                 when_full: str = "reject", synchronous: str = "FULL",
                 dead_letter_id_base: int = 0, reserve: int = DEFAULT_RESERVE,
                 role: str = "both") -> None:
        if role not in ROLES:
            raise ValueError(f"spool role must be one of {ROLES}, not {role!r}")
        self.path = path
        self.role = role
        self.wake_fd: int | None = None  # ingest role: a byte here after each appending commit
        self._disk = DiskGuard(path, reserve)
        # A worker's own file numbers its dead letters above this, so ids name their file
        # across the files of ``serve --workers`` (spool/shards.py).
        self.dead_letter_id_base = dead_letter_id_base
        self.max_size = max_size
        self.when_full = when_full
        # The delivery role's commits (cursors, dead letters, compaction) ride on the ingest
        # role's next fsync of the same WAL, which is recovered as a prefix: an OS crash takes
        # back cursor moves (a redelivery), never an acknowledged event; their own fsyncs held
        # the write lock every ingest commit waits for (docs/deploy.md, "One spool file").
        self.synchronous = "NORMAL" if role == "delivery" else synchronous
        self.used_bytes = 0
        self._measured_at = 0.0
        self.last_id = 0
        self.dropped_when_full = 0
        self._readers: dict[str, _Reader] = {}
        self._ops: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._outbox: list[Op] = []  # this event-loop pass's appends, handed over together
        self._writer: threading.Thread | None = None
        self._reads = OneThread("spool-read")
        self._read_local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: str | None = None
        self._poller: asyncio.Task[None] | None = None
        self._refreshing = False
        self._refresh_again = False  # asked again while a look was under way
        self._refresh_asked = 0.0  # monotonic time of the last refresh_soon
        self._refresher: asyncio.Future[None] | None = None

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
        if self.role == "delivery":
            self._poller = asyncio.create_task(self._poll(), name=f"spool-poll:{self.path}")
        orphaned = sorted(set(positions) - set(backends))
        if orphaned and backends:  # (an admin command opens the spool with no backends)
            log.warning("spool keeps events for backends no longer configured",
                        backends=orphaned, hint="beacon-router dlq purge --backend NAME")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._writer is not None:
            self._flush_outbox()
            self._ops.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        await self._reads.run(self._close_reader)
        await asyncio.to_thread(self._reads.shutdown)

    # -- ingest side -------------------------------------------------------------------------

    async def append(self, bodies: Sequence[bytes]) -> None:
        if self._writer is None:
            raise Unavailable("spool is not open", retry_after=5)
        if self._disk.full:  # refused here, before any write: see spool/diskspace.py
            raise Unavailable("the spool's disk is full; try later",
                              retry_after=RETRY_AFTER_DISK)
        if self.max_size and self.used_bytes >= self.max_size and self.when_full == "reject":
            raise Unavailable(f"spool is full ({self.used_bytes} bytes, max_size "
                              f"{self.max_size}); try later", retry_after=RETRY_AFTER_FULL)
        assert self._loop is not None
        done = self._loop.create_future()
        if not self._outbox:
            self._loop.call_soon(self._flush_outbox)
        self._outbox.append(Op("append", (bodies,), done))
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

    def refresh_soon(self) -> None:
        """Look for rows another process appended: once for however many calls meanwhile.
        A call while a look is under way makes one more after it, since that look may have
        read the log before the commit this call announces."""
        if self._writer is None:
            return
        self._refresh_asked = time.monotonic()
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        self._refresher = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        try:
            again = True
            while again:
                self._refresh_again = False
                try:
                    rows = await self._reads.run(
                        self._query,
                        "SELECT seq FROM sqlite_sequence WHERE name = 'events'", ())
                except sqlite3.Error as exc:
                    throttled("warning", "spool poll failed", error=str(exc), path=self.path)
                    return
                top = int(rows[0][0]) if rows else 0
                if top > self.last_id:
                    self.last_id = top
                    for reader in self._readers.values():
                        # A worker filling a batch is woken once its rest is there (``wait``),
                        # not by every commit on the way.
                        if top - reader.handed_out >= reader.wanted:
                            reader.arrived.set()
                again = self._refresh_again
        finally:
            self._refreshing = False

    async def _poll(self) -> None:
        """The fallback when no wake-up comes (none configured, or one lost): a look every
        ``POLL_SECONDS`` unless a wake-up asked for one meanwhile."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if time.monotonic() - self._refresh_asked >= POLL_SECONDS:
                self.refresh_soon()

    async def read(self, backend: str, limit: int) -> list[Entry]:
        reader = self._readers[backend]
        reader.arrived.clear()
        after = reader.handed_out
        rows = await self._reads.run(self._select, backend, after, limit)
        if rows:
            reader.handed_out = rows[-1][0]
            reader.inflight.append([reader.handed_out, False])
        return list(starmap(Entry, rows))

    async def wait(self, backend: str, timeout: float, at_least: int = 1) -> None:
        # Each group commit wakes every reader. A worker filling a batch asks for the rest of
        # it (``at_least``) and is woken once that many are in the log, or at the deadline, so
        # it reads once per batch instead of once per commit.
        reader = self._readers[backend]
        deadline = time.monotonic() + timeout
        reader.wanted = max(1, at_least)
        try:
            while True:
                if not reader.arrived.is_set():
                    try:
                        await asyncio.wait_for(reader.arrived.wait(),
                                               deadline - time.monotonic())
                    except TimeoutError:
                        return
                if at_least <= 1 or self.last_id - reader.handed_out >= at_least:
                    return
                if time.monotonic() >= deadline:
                    return
                # Not enough yet: wait for the next commit. (Whatever arrived stays unread and
                # is read when this returns; the flag only says when to look.)
                reader.arrived.clear()
        finally:
            reader.wanted = 1

    async def ack(self, backend: str, entries: Sequence[Entry]) -> None:
        """Mark entries handed out by ``read`` done; the cursor moves past contiguous done reads.

        ``entries`` may span several consecutive reads (a worker filling one batch)."""
        if not entries:
            return
        reader = self._readers[backend]
        ids = [e.id for e in entries]  # this spool's ids are ints
        first, last = int(min(ids)), int(max(ids))
        for batch in reader.inflight:
            if first <= batch[0] <= last:
                batch[1] = True
        new_position = reader.position
        while reader.inflight and reader.inflight[0][1]:
            new_position = reader.inflight.popleft()[0]
        if new_position != reader.position:
            reader.position = new_position
            # Not awaited: a lost cursor update only means a redelivery (at-least-once).
            self._ops.put(Op("cursor", (backend, new_position)))

    async def dead_letter(self, backend: str, entries: Sequence[tuple[Entry, str]],
                          attempts: int) -> None:
        if not entries:
            return
        assert self._loop is not None
        done = self._loop.create_future()
        rows = [(backend, int(e.id), e.body, reason[:1000], attempts, now_iso())
                for e, reason in entries]
        self._ops.put(Op("dead", (rows,), done))
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
        rows = await self._reads.run(self._select, backend, reader.position, 1)
        return Entry(rows[0][0], rows[0][1]) if rows else None

    async def holds_nothing(self) -> bool:
        """No event kept for any backend and no dead letter: the file may be deleted."""
        rows = await self._reads.run(
            self._query,
            "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM dead_letters)", ())
        return not rows[0][0]

    async def _call(self, fn: Any, notify: bool = False) -> Any:
        """Run ``fn(conn)`` in the writer's transaction and return its result."""
        if self._writer is None:
            raise Unavailable("spool is not open", retry_after=5)
        assert self._loop is not None
        done = self._loop.create_future()
        self._ops.put(Op("call", (fn, notify), done))
        return await done

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


