"""Room for the SQLite spool to free its own space when its filesystem fills.

The failure this prevents (issue 17): on a full disk, deleting delivered rows *needs* disk
space — SQLite writes the delete to the WAL first, and a checkpoint grows the main file before
the WAL can be reset. With none left, a drained spool stayed full for ever and refused every
beacon. So the spool keeps three promises:

1. **A reserve it owns.** A file of ``reserve`` bytes (``<spool>.reserve``, blocks really
   allocated) is held next to the database. When the filesystem fills — whoever filled it —
   the spool deletes that file first, so the writes that *free* space (cursor moves, deleting
   delivered rows, the checkpoint that truncates the WAL) always have room.
2. **A check before accepting.** Ingest is refused (503 + Retry-After, at the front door, so
   no write is even tried) once free space outside the reserve is less than the spool may
   still need: what its WAL may still grow to (``wal_limit``, below) plus a ``margin`` for the
   main file — or at once when a write fails for lack of space. A refused write is rolled
   back whole by SQLite: nothing acknowledged is touched.

   The WAL is checkpointed at ``wal_max``, but SQLite can only start it over when no reader
   is inside it, and the delivery side reads after every commit: the WAL grew to nearly twice
   ``wal_max`` (955 KiB against 512 KiB in tests/faults/test_disk_full.py), past the margin a
   disk that has just recovered keeps (one CI run saw such a disk refuse again within 50
   beacons). So past ``wal_limit`` (``wal_max``
   and a margin, three quarters of the reserve) the writer waits briefly for the readers and
   restarts it (``PRAGMA wal_checkpoint(RESTART)``): one checkpoint of the whole WAL still fits
   in the reserve.
3. **Recovery by itself.** While full, every compaction pass deletes what every backend has
   acked in chunks the reserve covers, vacuums the freed pages and truncates the WAL; once the
   reserve fits again with that headroom and another ``margin`` beyond it (so a disk at the
   edge does not flip with every write), the reserve is re-made and ingest resumes.

Why a reserve file and not only a free-space threshold: a threshold protects against the
spool filling its own disk, but not against another process filling a shared one; the file
is space no one else can take. Why not compact "without new space" alone: SQLite cannot
delete without writing. The reserve is cheap: ``posix_fallocate`` allocates without writing.
"""

from __future__ import annotations

import contextlib
import errno
import os

import structlog

from ..logs import Throttled

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=10.0)

_CHUNK = 1 << 16


class DiskGuard:
    """The spool's reserve file and its "full" state (see the module docstring).

    Only the spool's writer thread calls the methods; ``full`` is read by the event loop
    (a bool, so a plain read is safe)."""

    def __init__(self, db_path: str, reserve: int) -> None:
        self.path = db_path + ".reserve"
        self.wal_path = db_path + "-wal"
        self.directory = os.path.dirname(os.path.abspath(db_path))
        self.reserve = reserve
        self.wal_max = reserve // 2  # the spool checkpoints its WAL at this size
        self.margin = max(reserve // 4, 64 * 1024)  # a write group, the main file's growth
        self.wal_bytes = 0  # the WAL file's size at the last check
        self.full = False
        self.reason = ""

    def open(self) -> None:
        """Make the reserve; on a filesystem already full, start full (and drain)."""
        if self.reserve <= 0:
            return
        if not self._allocate():
            self.enter_full("no room for the spool's reserve")
        else:
            self.check()

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still allocate on the spool's filesystem."""
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    @property
    def wal_limit(self) -> int:
        """The WAL's bound: past it the writer restarts the WAL (see the module docstring)."""
        return self.wal_max + self.margin

    def headroom(self) -> int:
        """Free bytes the spool may still need: the WAL's growth to ``wal_limit``, a margin."""
        try:
            self.wal_bytes = os.path.getsize(self.wal_path)
        except FileNotFoundError:
            self.wal_bytes = 0
        return max(0, self.wal_limit - self.wal_bytes) + self.margin

    def check(self) -> None:
        """After each write: refuse ingest once free space is less than the headroom."""
        if not self.full and self.reserve > 0 and self.free_bytes() < self.headroom():
            self.enter_full("free space below the spool's headroom")

    def enter_full(self, reason: str) -> None:
        """Refuse ingest and give the reserve back to the filesystem, for compaction."""
        if not self.full:
            self.full, self.reason = True, reason
            throttled("warning", "spool disk full: ingest answers 503 until space returns",
                      key="full", reason=reason, free_bytes=self.free_bytes(),
                      reserve=self.reserve, path=self.directory)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def sync(self, role: str) -> None:
        """Before a compaction pass (``role`` "both" or "delivery") or instead of one
        ("ingest"). Two processes on one spool (``serve --delivery process``) share the reserve
        file as their flag, absent meaning full: the ingest side, which only appends, resumes
        once the delivery side, which compacts and so frees the room, has made the reserve
        again; the delivery side knows the disk is full once the ingest side removed it."""
        there = self.reserve <= 0 or os.path.exists(self.path)
        if role == "ingest":
            if self.full and there:
                self.full, self.reason = False, ""
                log.info("spool disk has room again: ingest resumes", free_bytes=self.free_bytes())
            return
        if role == "delivery" and not self.full and not there:
            self.full, self.reason = True, "the ingest process found the disk full"  # it logged
        self.check()

    def try_leave(self) -> bool:
        """While full: take the reserve back and accept again once it, the headroom and another
        margin fit (the margin keeps a disk at the edge from flipping with every write)."""
        if not self.full:
            return True
        if self.free_bytes() < self.reserve + self.headroom() + self.margin:
            return False
        if self.reserve > 0 and not self._allocate():
            return False
        self.full, self.reason = False, ""
        log.info("spool disk has room again: ingest resumes", free_bytes=self.free_bytes())
        return True

    def _allocate(self) -> bool:
        """Create the reserve file with its blocks allocated; False if they do not fit."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            throttled("warning", "spool reserve cannot be created", error=exc.strerror)
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, self.reserve)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _write_zeros(fd, self.reserve)  # a filesystem without fallocate
            os.fsync(fd)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                throttled("warning", "spool reserve cannot be created", error=exc.strerror)
            os.close(fd)
            fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # half a reserve would only take space from compaction
            return False
        finally:
            if fd >= 0:
                os.close(fd)


def _write_zeros(fd: int, size: int) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    zeros = bytes(_CHUNK)
    left = size
    while left > 0:
        left -= os.write(fd, zeros[:min(left, _CHUNK)])
