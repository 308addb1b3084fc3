"""One SQLite spool file per worker process, and the lock that keeps each file to one process.

SQLite is single-writer, so ``serve --workers N`` gives every worker its own file, derived from
``spool.path``: worker 0 keeps the path itself (``data/spool.db``, as with one process), worker
``k`` uses ``data/spool-k.db``. Each file has one lock per role: a process appends to it only
while it holds an exclusive ``flock`` on ``<file>.lock`` and delivers from it only while it holds
``<file>.delivery.lock``, so no two processes ever deliver the same event. ``--delivery inline``
holds both; under ``--delivery process`` the ingest worker holds the first and the delivery
process the second. The kernel drops a lock when its holder dies, even on ``kill -9``.

Files whose index is at or above the current worker count (the count went down) are *shards to
adopt*: worker ``i`` drains those with ``index % N == i`` and deletes each once it holds no
event and no dead letter (``router.serve.supervisor``). Dead-letter ids in shard ``k`` start above
``k * DEAD_LETTER_ID_STRIDE``, so a dead letter's id names its file across all shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time

import structlog

from ..config import SpoolConfig
from ..errors import Unavailable
from .base import Spool
from .factory import create_spool
from .sqlite import SqliteSpool

log = structlog.get_logger(__name__)

DEAD_LETTER_ID_STRIDE = 1_000_000_000  # shard k's dead letters are numbered k·10⁹ + 1, …
_LOCK_POLL = 0.1  # seconds between tries while another process holds it


def shard_path(path: str, index: int) -> str:
    """Worker ``index``'s spool file: ``path`` itself for 0, ``stem-<index><ext>`` otherwise."""
    if index == 0:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}-{index}{ext}"


def shard_files(path: str) -> dict[int, str]:
    """Every spool file of ``path``'s family on disk, index → path (0 only if it exists)."""
    directory, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    pattern = re.compile(rf"^{re.escape(stem)}-([1-9][0-9]*){re.escape(ext)}$")
    found = {0: path} if os.path.exists(path) else {}
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return found
    for entry in names:
        match = pattern.match(entry)
        if match:
            found[int(match.group(1))] = os.path.join(directory, entry)
    return dict(sorted(found.items()))


def worker_spool(spool: SpoolConfig, index: int, count: int, role: str = "both") -> Spool:
    """The spool worker ``index`` of ``count`` writes to (not opened yet), in ``role``.

    SQLite: its own file, with ``max_size`` split evenly so the files together stay within it.
    Redis: the shared stream; an explicit ``consumer`` name gets ``-<index>`` past worker 0,
    since two processes must never share one consumer's pending list."""
    if spool.type == "sqlite":
        update: dict[str, object] = {"path": shard_path(spool.path, index)}
        if spool.max_size and count > 1:
            update["max_size"] = max(1, spool.max_size // count)
        made = create_spool(spool.model_copy(update=update))
        assert isinstance(made, SqliteSpool)
        made.dead_letter_id_base = index * DEAD_LETTER_ID_STRIDE
        made.role = role
        return made
    if spool.consumer and index:
        spool = spool.model_copy(update={"consumer": f"{spool.consumer}-{index}"})
    return create_spool(spool)


def remove_spool_file(path: str) -> None:
    """Delete a drained spool file with its WAL, shared-memory and reserve companions."""
    for suffix in ("", "-wal", "-shm", "-journal", ".reserve"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


LOCK_SUFFIX = {"ingest": ".lock", "delivery": ".delivery.lock"}


class ShardLock:
    """An exclusive ``flock`` on ``<spool file>.lock`` (``role`` ingest) or
    ``<spool file>.delivery.lock``; its holder's pid is written inside."""

    def __init__(self, spool_path: str, role: str = "ingest") -> None:
        self.spool_path = spool_path
        self.role = role
        self.path = spool_path + LOCK_SUFFIX[role]
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; never blocks."""
        if self._fd is not None:
            return True
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The previous holder may have deleted the lock file after we opened it: then we hold
        # a lock on a name nobody else will see. Only a lock on the current file counts.
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self.try_acquire()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for a previous holder to exit."""
        deadline = time.monotonic() + timeout
        logged = False
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"spool {self.spool_path} is in use by another process ({self.holder()}) "
                    f"for {self.role}; each router process needs its own spool file "
                    "(see docs/deploy.md)"
                )
            if not logged:
                log.info(
                    "waiting for the spool lock",
                    spool=self.spool_path,
                    holder=self.holder(),
                    timeout=timeout,
                )
                logged = True
            await asyncio.sleep(_LOCK_POLL)

    def holder(self) -> str:
        """Who holds the lock, as far as the lock file says (for messages)."""
        try:
            with open(self.path, encoding="ascii") as fh:
                pid = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "unknown pid"

    def release(self, *, remove: bool = False) -> None:
        """Drop the lock; ``remove`` first deletes the lock file (its spool file is gone)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


class RoleLocks:
    """Several roles' locks on one spool file, taken and dropped together (``--delivery
    inline`` and adoption take both: they append and deliver)."""

    def __init__(self, spool_path: str, roles: tuple[str, ...] = ("ingest", "delivery")) -> None:
        self.spool_path = spool_path
        self.locks = [ShardLock(spool_path, role) for role in roles]

    def try_acquire(self) -> bool:
        """All or none; never blocks."""
        for n, lock in enumerate(self.locks):
            if not lock.try_acquire():
                for taken in self.locks[:n]:
                    taken.release()
                return False
        return True

    async def acquire(self, timeout: float) -> None:
        """Each in turn, waiting up to ``timeout`` seconds in all for their previous holders."""
        deadline = time.monotonic() + timeout
        try:
            for lock in self.locks:
                await lock.acquire(max(0.0, deadline - time.monotonic()))
        except Unavailable:
            self.release()
            raise

    def release(self, *, remove: bool = False) -> None:
        for lock in reversed(self.locks):
            lock.release(remove=remove)
