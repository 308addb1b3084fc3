"""A stored row, and what the SQLite and PostgreSQL engines behind ``type: store`` both do."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import orjson


class Row(NamedTuple):
    """One event as stored; ``data`` is already JSON text. The first eight fields are the
    table's columns in order, ``received_at`` as SQLite stores it (``iso_z``'s spelling), so
    the SQLite store binds ``row[:8]`` as is; PostgreSQL takes the datetime, the ninth.

    A named tuple, not a dataclass: the store makes one per event, and a dataclass's
    ``__init__`` sets each of nine fields in Python (bench/README.md, "the delivery role's
    commits")."""

    uuid: str
    received_at_text: str
    event: str
    source: str
    distinct_id: str | None
    version: str | None
    data: str
    profile: str | None  # the source profile that mapped it: replay gives it back
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The row as ``dry-run`` shows it."""
        return {
            "uuid": self.uuid,
            "received_at": self.received_at_text,
            "event": self.event,
            "source": self.source,
            "distinct_id": self.distinct_id,
            "version": self.version,
            "data": orjson.loads(self.data),
            **({"profile": self.profile} if self.profile is not None else {}),
        }


class Engine(Protocol):
    """What the SQLite and PostgreSQL stores both do."""

    async def migrate(self) -> None:
        """Create the table and its indexes if missing; raise RetryableError if unreachable."""

    async def insert(self, rows: Sequence[Row]) -> dict[int, str]:
        """Insert rows, skipping known uuids; return rows refused for good, by index, with why."""

    async def prune(self, cutoff: datetime) -> int:
        """Delete rows received before ``cutoff``; return how many."""

    async def aclose(self) -> None: ...

