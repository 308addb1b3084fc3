"""A store read back as events, in the order received: what ``beacon-router replay`` pages through.

A row keeps all an event is (uuid, received_at, name, source, data), so the event rebuilt from it
carries its original uuid: the dedup key every vendor backend maps it to. Pages are keyed on
(received_at, uuid), an order that is total and stable while rows are added, so a replay can stop
after any page and go on from the last key it finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ...errors import ConfigError
from ...event import Event, iso_z
from . import StoreBackend, parse_timestamp, parse_url

_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Position:
    """The key of the last row read: (received_at as ISO 8601 UTC, uuid); empty = the start."""

    received_at: str = ""
    uuid: str = ""


class Archive:
    """Read-only pages of one ``type: store`` backend's table."""

    def __init__(self, store: StoreBackend, since: str | None = None,
                 until: str | None = None) -> None:
        self.store = store
        self._pg = parse_url(store.options.url)[0] == "postgresql"  # asyncpg: only then
        # Bounds are normalised the way rows are written, so text comparison is time order.
        self.since = _bound("since", since)
        self.until = _bound("until", until)

    async def open(self) -> None:
        """Make sure the table exists (an archive nothing was written to yet is empty)."""
        await self.store.migrate()

    async def count(self) -> int:
        """Rows between ``since`` and ``until``."""
        return await self.store.engine.count(*self._bounds())  # type: ignore[attr-defined]

    async def page(self, after: Position, limit: int) -> list[Event]:
        """Up to ``limit`` events after ``after``, oldest first."""
        key: tuple[Any, str] = (after.received_at, after.uuid)
        if self._pg:
            key = (parse_timestamp(after.received_at) if after.received_at else _EARLIEST,
                   after.uuid)
        rows = await self.store.engine.read_page(  # type: ignore[attr-defined]
            key, limit, *self._bounds())
        return [Event(uuid=uuid, received_at=_iso(received_at), name=name, data=_loads(data),
                      source=source, profile=profile)
                for uuid, received_at, name, source, data, profile in rows]

    def _bounds(self) -> tuple[Any, Any]:
        if self._pg:
            return (parse_timestamp(self.since) if self.since else _EARLIEST,
                    parse_timestamp(self.until) if self.until else _LATEST)
        return self.since or "", self.until or "~"  # "~" sorts after every ISO 8601 text


def _bound(name: str, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return iso_z(parse_timestamp(value))
    except ValueError:
        raise ConfigError(f"must be an ISO 8601 time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z; "
                          f"got {value[:40]!r}", key=f"--{name}") from None


def position_of(event: Event) -> Position:
    return Position(event.received_at, event.uuid)


def _iso(value: str | datetime) -> str:
    return iso_z(value) if isinstance(value, datetime) else value


def _loads(data: str) -> Any:
    return orjson.loads(data)
