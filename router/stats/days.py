"""Which installations were seen on each day, kept in memory as bitmaps, read once per day.

Every distinct ``distinct_id`` gets a small number; a day is the bitmap (a Python int) of the
numbers seen that day, plus, per dimension, one bitmap per value holding the installations whose
last beacon that day reported it. Unions over any range of days are then ``|`` on ints and
counts are ``int.bit_count()``: a year of reports for thousands of installations costs
milliseconds, however many beacons are stored.

A day is re-read only when its row count changes (new beacons today, late deliveries after a
store outage, retention deleting it). Counting a day's rows is an index-only range count; the
last few days are counted at most every ``recheck`` seconds, all of them (a year: 366 counts,
~0.1 s for 1M rows) at most every ``full_recheck`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from .queries import DayRow, StoreReader, Value

CHUNK_DAYS = 7  # days per query when filling the index: a week of rows in memory at a time
# Days that still change as a rule: today, and late deliveries (a backend retries for up to
# 72 h by default). Older days change by retention or by hand; the full check catches those.
RECENT_DAYS = timedelta(days=4)


@dataclass(frozen=True, slots=True)
class Day:
    """One day: who was seen, and per dimension, value → who last reported it that day."""

    active: int = 0
    values: tuple[dict[Value, int], ...] = ()


EMPTY = Day()


@dataclass
class DayIndex:
    """Per-day bitmaps of one store, filled and refreshed from a :class:`StoreReader`."""

    reader: StoreReader
    dimensions: int
    recheck: float = 10.0  # seconds between looks at the last RECENT_DAYS days
    full_recheck: float = 300.0  # seconds between looks at every day
    first: date | None = None  # the oldest stored day
    days: dict[date, Day] = field(default_factory=dict)
    _ids: dict[str, int] = field(default_factory=dict)
    _counts: dict[date, int] = field(default_factory=dict)
    _checked_at: float = float("-inf")
    _full_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # Only this task's refresh writes _ids (on a worker thread); reports read days and first,
    # which change by whole-value assignment on the event loop.

    def day(self, when: date) -> Day:
        """The day's bitmaps; empty when nothing was stored that day."""
        return self.days.get(when, EMPTY)

    @property
    def installations(self) -> int:
        """How many distinct installations were ever read."""
        return len(self._ids)

    async def refresh(self, today: date, *, force: bool = False) -> None:
        """Bring the stored days up to date: the last few at most every ``recheck`` seconds,
        all of them at most every ``full_recheck`` seconds, everything now if ``force``."""
        async with self._lock:
            now = time.monotonic()
            if not force and now - self._checked_at < self.recheck:
                return
            full = force or now - self._full_at >= self.full_recheck
            span = await self.reader.span()
            if span is None:
                self.first, self.days, self._counts = None, {}, {}
            else:
                self.first, end = span[0], max(span[1], today) + ONE_DAY
                begin = self.first if full else max(self.first, today - RECENT_DAYS)
                counts = await self.reader.day_counts(begin, end)
                for gone in [
                    d
                    for d in self._counts  # retention, or a manual delete
                    if d < self.first or (d >= begin and d not in counts)
                ]:
                    self.days.pop(gone, None)
                    del self._counts[gone]
                await self._reread(
                    sorted(d for d, n in counts.items() if self._counts.get(d) != n), counts
                )
            self._checked_at = now
            if full:
                self._full_at = now

    async def _reread(self, stale: list[date], counts: dict[date, int]) -> None:
        """Read the stale days again, a chunk at a time: the next chunk's query runs while
        this one's rows become bitmaps (SQLite lets go of the GIL while it searches)."""
        chunks = list(runs(stale, CHUNK_DAYS))
        fetch = asyncio.ensure_future(self.reader.rows(*chunks[0])) if chunks else None
        try:
            for i, (start, stop) in enumerate(chunks):
                assert fetch is not None
                rows = await fetch
                fetch = (
                    asyncio.ensure_future(self.reader.rows(*chunks[i + 1]))
                    if i + 1 < len(chunks)
                    else None
                )
                self.days.update(await asyncio.to_thread(self._read, rows))
                for n in range((stop - start).days):
                    day = start + timedelta(days=n)
                    if day in counts:
                        self._counts[day] = counts[day]
        finally:
            if fetch is not None and not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch

    def _read(self, rows: Iterable[DayRow]) -> dict[date, Day]:
        """The days in ``rows``; runs on a worker thread (a month of rows is ~1 s of Python)."""
        # Rows come oldest first, so an installation's last row of a day is the one that stays.
        last: dict[str, dict[int, tuple[Value, ...]]] = {}
        ids = self._ids
        for day, distinct_id, values in rows:
            number = ids.get(distinct_id)
            if number is None:
                number = ids[distinct_id] = len(ids)
            seen = last.get(day)
            if seen is None:
                seen = last[day] = {}
            seen[number] = values
        return {date.fromisoformat(day): self._day(seen) for day, seen in last.items()}

    def _day(self, seen: dict[int, tuple[Value, ...]]) -> Day:
        # A day holds few distinct value combinations: one bitmap per combination, then each
        # dimension's value bitmaps are unions of those, instead of work per installation.
        combos: dict[tuple[Value, ...], list[int]] = {}
        for number, values in seen.items():
            combos.setdefault(values, []).append(number)
        by_value: list[dict[Value, int]] = [{} for _ in range(self.dimensions)]
        for values, numbers in combos.items():
            who = bitmap(numbers)
            for i, value in enumerate(values):
                by_value[i][value] = by_value[i].get(value, 0) | who
        return Day(bitmap(seen), tuple(by_value))


ONE_DAY = timedelta(days=1)


def bitmap(numbers: Iterable[int]) -> int:
    """The int with exactly these bits set; linear time, unlike repeated ``|=`` on a big int."""
    numbers = list(numbers)
    if not numbers:
        return 0
    buf = bytearray(max(numbers) // 8 + 1)
    for n in numbers:
        buf[n >> 3] |= 1 << (n & 7)
    return int.from_bytes(buf, "little")


def runs(days: Sequence[date], longest: int) -> Iterator[tuple[date, date]]:
    """Sorted days as ``[start, stop)`` spans of consecutive days, each at most ``longest``."""
    start = prev = None
    for day in days:
        if (
            start is not None
            and prev is not None
            and (day - prev != ONE_DAY or (day - start).days >= longest)
        ):
            yield start, prev + ONE_DAY
            start = None
        if start is None:
            start = day
        prev = day
    if start is not None and prev is not None:
        yield start, prev + ONE_DAY
