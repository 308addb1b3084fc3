"""The ``round_time`` filter: timestamps coarsened to an interval (an hour by default), so a
beacon's time does not single out its sender."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    Field,
    field_validator,
)

from ..config import Duration
from ..event import _MISSING, Event, get_path, iso_z, split_path
from ..speedups import speedups
from .base import Filter, Options, register
from .fields import FieldPath, replace_path

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_THRESHOLD = 1e11  # larger epoch numbers are milliseconds (1e11 s is the year 5138)
_fromisoformat = datetime.fromisoformat  # bound once: the class attribute binds per lookup
_MAX_TIMES = 1440  # time-of-day table entries kept: every minute of a day
_EPOCH_TEXT = re.compile(r"\s*[+-]?\d+(?:\.\d+)?\s*", re.ASCII)


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text or epoch seconds/milliseconds; None if not one."""
    try:
        if isinstance(value, str):
            if _EPOCH_TEXT.fullmatch(value):
                return parse_time(float(value))
            dt = datetime.fromisoformat(value.strip())
            return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)  # naive: read as UTC
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
            return _EPOCH + timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        pass
    return None


class RoundTimeOptions(Options):
    """``fields`` (default ``[timestamp]``) floored to a multiple of ``to`` (at least 1s)."""

    fields: list[FieldPath] = Field(["timestamp"], min_length=1,
                                    description="ISO 8601 or epoch (s or ms) timestamps")
    to: Duration = Field(ge=1.0, description="floored to a multiple of this: 1m, 1h, 1d")

    @field_validator("to")
    @classmethod
    def _whole_seconds(cls, v: float) -> float:
        if not v.is_integer():
            raise ValueError("must be a whole number of seconds (e.g. 1m, 1h, 1d)")
        return v


@register
class RoundTime(Filter):
    """Floor timestamps to ``to`` (1m, 1h, 1d) counted from the Unix epoch; output ISO 8601 UTC."""

    type = "round_time"
    Options = RoundTimeOptions

    def __init__(self, options: RoundTimeOptions) -> None:
        super().__init__(options)
        self._step = timedelta(seconds=options.to)
        self._seconds = int(options.to)
        # Every UTC day starts at a multiple of such a step from the epoch, so flooring within
        # the day is enough: integer arithmetic instead of timedelta arithmetic and isoformat.
        self._within_day = 86400 % self._seconds == 0
        self._paths = [split_path(p) for p in options.fields]
        self._by_minute = self._seconds % 60 == 0
        self._times: dict[str, str] = {}  # "HH:MM[:SS]" → "THH:MM:SSZ", floored
        # _floor_utc_text in C (router/_speedups.c), where it was built: 10.4k → 5.6k a beacon
        self._c_floor = (speedups.floor_utc_text
                         if speedups is not None and self._within_day else None)

    def floor(self, value: Any) -> str | None:
        """The floored ISO 8601 UTC text (``2024-01-01T12:00:00Z``), or None if unparseable."""
        if self._c_floor is not None:
            text = self._c_floor(value, self._seconds)
            if text is not None:
                return text
        elif (self._within_day and type(value) is str and len(value) == 20 and value[19] == "Z"
                and value.isascii()):
            text = self._floor_utc_text(value)
            if text is not None:
                return text
        dt = parse_time(value)
        if dt is None:
            return None
        try:
            if self._within_day:
                dt = dt.astimezone(UTC)
                s = dt.hour * 3600 + dt.minute * 60 + dt.second
                s -= s % self._seconds
                return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
                        f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z")
            floored = _EPOCH + ((dt - _EPOCH) // self._step) * self._step
        except OverflowError:
            return None
        return iso_z(floored, "seconds")

    def _floor_utc_text(self, value: str) -> str | None:
        """``2025-11-28T00:10:11Z`` (what most clients send) floored without a datetime: the
        date is kept as written, the time of day comes from a table. None when the text is not
        exactly that form, for floor() to decide."""
        if value[4:17:3] != "--T::":  # the separators at 4, 7, 10, 13 and 16, in one slice
            return None
        try:
            _fromisoformat(value)  # the same check parse_time makes: a real date and time
        except ValueError:
            return None
        # The table is keyed by the text of the time of day, so a hit costs no int() at all;
        # by "HH:MM" when the step is whole minutes (at most 1,440 keys), else "HH:MM:SS".
        clock = value[11:16] if self._by_minute else value[11:19]
        time_of_day = self._times.get(clock)
        if time_of_day is None:
            s = int(value[11:13]) * 3600 + int(value[14:16]) * 60 + int(value[17:19])
            s -= s % self._seconds
            time_of_day = f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"
            if len(self._times) < _MAX_TIMES:
                self._times[clock] = time_of_day
        return value[:10] + time_of_day

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for path in self._paths:
            if len(path) == 1:  # `timestamp`: no walk
                value = data.get(path[0], _MISSING)
                if value is _MISSING:
                    continue
                if self._c_floor is not None:  # None: not the common text, floor() decides
                    floored = self._c_floor(value, self._seconds) or self.floor(value)
                # floor()'s first test, here: the common text goes straight to its fast path
                elif (self._within_day and type(value) is str and len(value) == 20
                        and value[19] == "Z" and value.isascii()):
                    floored = self._floor_utc_text(value)
                    if floored is None:
                        floored = self.floor(value)
                else:
                    floored = self.floor(value)
                if floored is not None:
                    data[path[0]] = floored
                continue
            value = get_path(data, path, _MISSING)
            if value is _MISSING:
                continue
            floored = self.floor(value)
            if floored is not None:
                replace_path(data, path, floored)
        return event
