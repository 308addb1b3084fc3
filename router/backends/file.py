"""``type: file`` — JSON Lines (one ``event.to_dict()`` a line), rotated by size.

``events.jsonl`` is the file being written; when the next line would take it past ``max_bytes``
it becomes ``events.jsonl.1``, the older ones shift up, and ``events.jsonl.<keep>`` is the
oldest kept. A failed write is cut back so the file never ends in half a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import Field

from ..config import Size
from ..event import Event
from .base import Backend, Options, Request, SendResult, register


class FileOptions(Options):
    """``path``, rotation at ``max_bytes`` keeping ``keep`` old files, optional ``fsync``."""

    path: str = Field(description="the JSON Lines file; its directory is created")
    max_bytes: Size = Field(100 * 1024 * 1024, gt=0,
                            description="rotate before a line would take the file past this")
    keep: int = Field(5, ge=1, le=1000, description="rotated files kept (FILE.1 newest)")
    fsync: bool = Field(False, description="also fsync after every batch")


@register
class FileBackend(Backend):
    """Appends batches to a JSON Lines file on the backend's own thread."""

    type = "file"
    Options = FileOptions

    def __init__(self, name: str, options: FileOptions) -> None:
        super().__init__(name, options)
        self.options: FileOptions = options
        self._writer = RotatingFile(
            Path(options.path), options.max_bytes, options.keep, fsync=options.fsync
        )
        # One thread: batches are written whole and in order even with concurrent senders.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"file-{name}")

    def render(self, batch: Sequence[Event]) -> list[Request]:
        lines = [event.to_json().decode() for event in batch]
        return [Request("APPEND", self.options.path, {}, lines)]

    async def send(self, batch: Sequence[Event]) -> SendResult:
        lines = [event.to_json() + b"\n" for event in batch]
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._writer.write, lines
            )
        except OSError as exc:
            # Disk full, permissions, a missing mount: ops can fix these, so retry.
            return SendResult.retry_all(
                len(batch),
                f"cannot write {self.options.path}: {exc.strerror or type(exc).__name__}",
            )
        return SendResult.delivered()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)


class RotatingFile:
    """Size-rotated append-only file; not thread-safe, so it is used from one thread."""

    def __init__(self, path: Path, max_bytes: int, keep: int, *, fsync: bool = False) -> None:
        self.path, self.max_bytes, self.keep, self.fsync = path, max_bytes, keep, fsync
        self._fd: int | None = None
        self._size = 0

    def write(self, lines: Sequence[bytes]) -> None:
        """Append lines, rotating before any line that would pass ``max_bytes``; then flush."""
        self._ensure_open()
        pending: list[bytes] = []
        pending_size = 0
        for line in lines:
            used = self._size + pending_size
            if used and used + len(line) > self.max_bytes:
                self._append(pending)
                pending, pending_size = [], 0
                self._rotate()
            pending.append(line)
            pending_size += len(line)
        self._append(pending)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _ensure_open(self) -> None:
        if self._fd is not None and not self._replaced():
            return
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # 0o640: beacons are not for every local user.
        # O_RDWR, not O_WRONLY: the torn-line check below reads the last byte.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        self._fd, self._size = fd, os.fstat(fd).st_size
        # A crash mid-line left a fragment: end it, so the next line starts clean.
        if self._size and os.pread(fd, 1, self._size - 1) != b"\n":
            self._append([b"\n"])

    def _replaced(self) -> bool:
        """Whether someone moved or deleted the file under us (logrotate, an operator)."""
        assert self._fd is not None
        try:
            ours, theirs = os.fstat(self._fd), os.stat(self.path)
        except FileNotFoundError:
            return True
        return (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino)

    def _append(self, lines: Sequence[bytes]) -> None:
        if not lines:
            return
        assert self._fd is not None
        joined, start = b"".join(lines), self._size
        data = memoryview(joined)
        try:
            while data:  # os.write may write less than asked
                data = data[os.write(self._fd, data) :]
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            self._cut_back(start)
            raise
        self._size = start + len(joined)

    def _cut_back(self, size: int) -> None:
        assert self._fd is not None
        # Not a regular file (e.g. /dev/full)? Then there is nothing to cut; report the original.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, size)

    def _rotate(self) -> None:
        self.close()
        for i in range(self.keep - 1, 0, -1):
            older = self._numbered(i)
            if older.exists():
                os.replace(older, self._numbered(i + 1))
        os.replace(self.path, self._numbered(1))
        self._ensure_open()

    def _numbered(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")
