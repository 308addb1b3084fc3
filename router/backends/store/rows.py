"""A stored row, and what the SQLite and PostgreSQL engines behind ``type: store`` both do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from ...event import iso_z


@dataclass(slots=True)
class Row:
    """One event as stored; ``data`` is already JSON text. Not changed once made (not frozen:
    a frozen dataclass's __init__ costs ~4 times as much, and the store makes one per event)."""

    uuid: str
    received_at: datetime
    event: str
    source: str
    distinct_id: str | None
    version: str | None
    data: str
    profile: str | None = None  # the source profile that mapped it: replay gives it back
    # ``received_at`` as ``iso_z`` spells it, when the event carried it so already: what the
    # SQLite store writes (None: formatted from ``received_at``).
    received_at_iso: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as ``dry-run`` shows it."""
        return {
            "uuid": self.uuid,
            "received_at": iso_z(self.received_at),
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

