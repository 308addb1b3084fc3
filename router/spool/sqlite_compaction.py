"""The SQLite spool's room: compaction, the WAL's bound, and what it does on a full disk.

The writer thread (spool/sqlite_writer.py) calls these between write groups: it deletes what
every backend has acked, in chunks, gives free pages back to the disk, keeps the WAL within
``DiskGuard.wal_limit``, and, while the disk is full, frees what it can so that ingest resumes
by itself (spool/diskspace.py says why each bound is what it is).
"""

from __future__ import annotations

import sqlite3
import time

import structlog

from ..logs import Throttled
from .diskspace import DiskGuard

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=10.0)

COMPACT_CHUNK = 5000         # rows deleted per transaction: keeps each pause short
COMPACT_CHUNK_SHARED = 1000  # the delivery process's: an ingest commit waits for its lock
KEEP_FREE_PAGES = 2048       # free pages kept in the file for reuse; beyond, given back
ROW_BYTES = "length(body) + 64"  # a row's bytes in the file, as compaction counts them
BUSY_TIMEOUT_MS = 10000      # how long a write waits for the other process's transaction
RESTART_WAIT_MS = 50         # how long a WAL restart waits for readers (_restart_wal)
_SQLITE_FULL = 13


class SpoolCompaction:
    """The compaction half of the writer thread of :class:`~router.spool.sqlite.SqliteSpool`."""

    role: str  # "both", or "ingest" / "delivery" when two processes share the file
    max_size: int | None
    used_bytes: int
    dropped_when_full: int
    _disk: DiskGuard
    _measured_at: float

    def _out_of_space(self, exc: sqlite3.Error) -> bool:
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        try:  # an I/O error may be ENOSPC under another name: ask the filesystem
            return self._disk.free_bytes() < self._disk.margin
        except OSError:
            return False

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        # A checkpoint copies the WAL into the main file, which may grow by as much:
        # checkpoint at half the reserve and hold the WAL within three quarters of it
        # (_restart_wal), so freeing the reserve always covers one more checkpoint.
        if self._disk.reserve <= 0:
            return
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = max(64, min(1000, self._disk.reserve // 2 // page))  # 1000: SQLite's default
        conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        self._disk.wal_max = pages * page
        # Cut back to the limit at each restart: a WAL file larger than it is one growing now.
        conn.execute(f"PRAGMA journal_size_limit = {self._disk.wal_limit}")

    def _restart_wal(self, conn: sqlite3.Connection) -> None:
        # The WAL outgrew its limit because a reader was inside it at every checkpoint (the
        # delivery side reads after each commit): wait for the readers a moment, copy the WAL
        # back and have the next write start it over (spool/diskspace.py). A busy answer
        # leaves it for the next write group; a wait of 50 ms at most keeps ingest moving.
        conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
        except sqlite3.Error as exc:
            if not self._disk.full and self._out_of_space(exc):
                self._disk.enter_full(str(exc))
            else:
                throttled("warning", "spool WAL checkpoint failed", error=str(exc))
            busy = 1
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not busy:
            self._disk.wal_bytes = 0  # the next check measures it again

    def _chunk_end(self, conn: sqlite3.Connection, first: int, last: int) -> int:
        """The last id of a compaction chunk from ``first``: at most ``last``, rows of at most a
        quarter of the reserve. Freeing N bytes first writes about N bytes of WAL (each page
        rewritten): a bounded chunk fits in what the reserve frees (spool/diskspace.py)."""
        if self._disk.reserve <= 0:
            return last
        bound, span = max(64 * 1024, self._disk.reserve // 4), (first, last)
        # Most chunks fit whole: a plain sum tells that at a sixth of the running sum's cost.
        whole = conn.execute(f"SELECT sum({ROW_BYTES}) FROM events WHERE id BETWEEN ? AND ?",
                             span).fetchone()[0]
        if whole is not None and whole <= bound:
            return last
        row = conn.execute(f"SELECT max(id) FROM (SELECT id, sum({ROW_BYTES}) OVER (ORDER BY id) "
                           "AS run FROM events WHERE id BETWEEN ? AND ?) WHERE run <= ?",
                           (*span, bound)).fetchone()
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
                chunk = COMPACT_CHUNK_SHARED if self.role == "delivery" else COMPACT_CHUNK
                upto = self._chunk_end(conn, first, min(floor, first + chunk - 1))
                conn.execute("DELETE FROM events WHERE id <= ?", (upto,))
                deleted, more = True, upto < floor
            # Give space back to the OS, also once a drain has deleted everything: else the
            # file stays as large as the largest backlog it ever held.
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free > KEEP_FREE_PAGES or (free and self._disk.full):
                pages = self._vacuum_pages(conn)
                _vacuum(conn, pages)
                vacuumed, more = True, more or free - pages > KEEP_FREE_PAGES
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


def _vacuum(conn: sqlite3.Connection, pages: int) -> None:
    """Give up to ``pages`` free pages back to the OS (outside a transaction). Not execute():
    for a statement without result columns it steps once, and this pragma frees one page per
    step — the compaction here freed one page per pass for that reason."""
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
