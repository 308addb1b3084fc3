"""The installed-base report: active, new and churned installations and breakdowns, by period.

Definitions (docs/stats.md says the same for ops):

- *active* in a period: installations with at least one beacon in it; ``active_7d`` and
  ``active_30d``: in the 7 and 30 days ending with the period's last day (or today).
- *new* in a period: installations whose first stored beacon falls in it.
- *churned* in a period: installations seen on a day of the period and then not for
  ``churn_after`` days. Known only once those days have passed: ``churn_known_until`` is the
  last day for which it is.
- *breakdowns* and *versions*: each installation counted once, under the value its last beacon
  of the range (of the period, for versions) reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from ..errors import BadRange
from .days import ONE_DAY, DayIndex
from .queries import Value

Granularity = Literal["day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "week", "month")
MAX_DAYS = 800  # a range longer than two years is a typo more often than a question
NOT_SET = "(not set)"  # the bucket of installations that did not report a dimension



@dataclass(frozen=True)
class Range:
    """The days ``start`` … ``end`` (both included, UTC), grouped by ``granularity``."""

    start: date
    end: date
    granularity: Granularity = "day"

    @classmethod
    def parse(
        cls,
        start: str | None,
        end: str | None,
        granularity: str | None,
        today: date,
        default_days: int = 30,
    ) -> Range:
        """From query parameters (``YYYY-MM-DD``); defaults: the last ``default_days`` days."""
        try:
            last = date.fromisoformat(end) if end else today
            first = date.fromisoformat(start) if start else last - timedelta(days=default_days - 1)
        except ValueError:
            raise BadRange("from and to are dates written YYYY-MM-DD") from None
        if granularity not in (None, *GRANULARITIES):
            raise BadRange(f"granularity is one of {', '.join(GRANULARITIES)}")
        if first > last:
            raise BadRange("from is after to")
        if (last - first).days >= MAX_DAYS:
            raise BadRange(f"a range spans at most {MAX_DAYS} days")
        return cls(first, last, granularity or "day")  # type: ignore[arg-type]

    def periods(self) -> Iterator[tuple[date, date]]:
        """Each period as (first day, last day), clipped to the range."""
        start = self.start
        while start <= self.end:
            stop = min(next_period(start, self.granularity), self.end + ONE_DAY)
            yield start, stop - ONE_DAY
            start = stop


def next_period(day: date, granularity: Granularity) -> date:
    """The first day of the period after the one holding ``day`` (weeks start on Monday)."""
    if granularity == "day":
        return day + ONE_DAY
    if granularity == "week":
        return day + timedelta(days=7 - day.weekday())
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def build_report(
    index: DayIndex,
    span: Range,
    dimensions: Sequence[str],
    selected: Sequence[str],
    today: date,
    churn_days: int,
) -> dict[str, Any]:
    """The report over ``span`` from a refreshed index; ``selected`` ⊆ ``dimensions``."""
    bits = _Bits(index, today)
    seen = bits.union(index.first or span.start, span.start - ONE_DAY)  # before the range
    known_until = today - timedelta(days=churn_days + 1)
    series, versions, churned_all, new_total = [], [], 0, 0
    version = dimensions.index("version") if "version" in dimensions else None
    for first, last in span.periods():
        active = bits.union(first, last)
        new = active & ~seen
        seen |= active
        churned = 0
        for day in _days(first, min(last, known_until)):
            churned |= bits.at(day) & ~bits.union(day + ONE_DAY, day + timedelta(days=churn_days))
        churned_all |= churned
        new_total += new.bit_count()
        end = min(last, today)
        series.append(
            {
                "period": first.isoformat(),
                "active": active.bit_count(),
                "active_7d": bits.window(end, 7).bit_count(),
                "active_30d": bits.window(end, 30).bit_count(),
                "new": new.bit_count(),
                "churned": churned.bit_count(),
            }
        )
        if version is not None:
            versions.append(
                {
                    "period": first.isoformat(),
                    "counts": dict(bits.last_values(first, last, version)),
                }
            )
    end = min(span.end, today)
    report: dict[str, Any] = {
        "from": span.start.isoformat(),
        "to": span.end.isoformat(),
        "granularity": span.granularity,
        "churn_known_until": known_until.isoformat(),
        "totals": {
            "installations": bits.union(span.start, span.end).bit_count(),
            "active_1d": bits.at(end).bit_count(),
            "active_7d": bits.window(end, 7).bit_count(),
            "active_30d": bits.window(end, 30).bit_count(),
            "new": new_total,
            "churned": churned_all.bit_count(),
        },
        "series": series,
        "breakdowns": {
            name: [
                {"value": v, "installations": n}
                for v, n in bits.last_values(span.start, span.end, dimensions.index(name))
            ]
            for name in selected
        },
    }
    if version is not None:
        report["versions"] = versions
    return report


class _Bits:
    """Unions and last-value counts over an index's days (memoised: periods overlap)."""

    def __init__(self, index: DayIndex, today: date) -> None:
        self.index, self.today = index, today
        self._unions: dict[tuple[date, date], int] = {}

    def at(self, day: date) -> int:
        return self.index.day(day).active

    def window(self, end: date, days: int) -> int:
        """Installations seen in the ``days`` days ending with ``end``."""
        return self.union(end - timedelta(days=days - 1), end)

    def union(self, first: date, last: date) -> int:
        key = (first, last)
        if key not in self._unions:
            out = 0
            for day in _days(max(first, self.index.first or first), min(last, self.today)):
                out |= self.at(day)
            self._unions[key] = out
        return self._unions[key]

    def last_values(self, first: date, last: date, dimension: int) -> list[tuple[str, int]]:
        """(value, installations), most first: each counted under its last report in the span."""
        left = self.union(first, last)
        counts: dict[Value, int] = {}
        day = min(last, self.today)
        while left and day >= first:  # walk back: the first value met is the last reported
            stored = self.index.day(day)
            for value, who in stored.values[dimension].items() if stored.values else ():
                if hit := (who & left).bit_count():
                    counts[value] = counts.get(value, 0) + hit
            left &= ~stored.active
            day -= ONE_DAY
        named = ((NOT_SET if v is None else v, n) for v, n in counts.items())
        return sorted(named, key=lambda item: (-item[1], item[0]))


def _days(first: date, last: date) -> Iterator[date]:
    for i in range((last - first).days + 1):
        yield first + timedelta(days=i)
