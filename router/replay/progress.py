"""How far a replay is: one line rewritten in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from .checkpoint import Checkpoint

PLAIN_EVERY = 5.0  # seconds between two lines when the output is not a terminal


class ProgressLine:
    """Call with each checkpoint; ``finish`` ends the line. Rate and ETA count this run only."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._started = time.monotonic()
        self._first: int | None = None  # rows already scanned when this run began
        self._last_line = 0.0

    def __call__(self, cp: Checkpoint, total: int) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = cp.scanned
        if not self.tty and now - self._last_line < PLAIN_EVERY:
            return
        self._last_line = now
        text = self.describe(cp, total, now)
        if self.tty:
            self.stream.write(f"\r\x1b[K{text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, cp: Checkpoint) -> None:
        """Mark where this run begins (a resumed job's earlier rows do not count in its rate)."""
        self._first = cp.scanned
        self._started = time.monotonic()

    def describe(self, cp: Checkpoint, total: int, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        rate = (cp.scanned - (self._first or 0)) / elapsed
        left = max(total - cp.scanned, 0)
        eta = _clock(left / rate) if rate > 0 else "?"
        share = f" ({100 * cp.scanned // total}%)" if total else ""
        return (f"{cp.selection.source} → {cp.selection.target}: {cp.scanned:,}/{total:,} "
                f"events{share}, {cp.delivered:,} delivered, {cp.dead_lettered:,} "
                f"dead-lettered · {rate:,.0f}/s · ETA {eta}")

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
