"""What every spool is: one durable log of events that each backend reads at its own position.

The contract delivery relies on, whatever the store (SQLite file, Redis Streams):

* ``append`` returns only once the events are durable — the ``202`` waits on it.
* ``read(backend, n)`` hands out the next entries that backend's worker has not been given yet,
  oldest first; entries handed out but never acked come back after a restart (at-least-once).
* ``ack`` marks entries done for that backend; an entry leaves the log once every backend has it.
* ``dead_letter`` keeps entries a backend refused for good, with the reason and attempt count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Entry:
    """One spooled event: its position in the log and its serialized body (``Event.to_json``).
    Never changed once read (not frozen: a frozen dataclass's __init__ costs ~2.5 times as much,
    and delivery makes one per event per backend)."""

    id: int | str
    body: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry a backend refused for good."""

    id: int
    backend: str
    body: bytes
    reason: str
    attempts: int
    failed_at: str


class Spool(Protocol):
    """The interface delivery and ingest use; see the module docstring for the guarantees."""

    async def open(self, backends: Sequence[str]) -> None:
        """Create storage if needed and register a reader position for each backend."""

    async def close(self) -> None: ...

    async def append(self, bodies: Sequence[bytes]) -> None:
        """Store events durably; raise ``errors.Unavailable`` when full or unreachable."""

    async def read(self, backend: str, limit: int) -> list[Entry]:
        """Up to ``limit`` entries not yet handed to ``backend``'s worker, oldest first."""

    async def wait(self, backend: str, timeout: float, at_least: int = 1) -> None:
        """Return once entries may have arrived for ``backend`` since its last read, or after
        ``timeout`` seconds; returns at once if some arrived already. ``at_least`` is a hint:
        a spool that can count what is waiting may hold on until that many have arrived."""

    async def ack(self, backend: str, entries: Sequence[Entry]) -> None:
        """``backend`` is done with these entries (delivered, filtered out or dead-lettered)."""

    async def dead_letter(self, backend: str, entries: Sequence[tuple[Entry, str]],
                          attempts: int) -> None:
        """Keep refused entries with their reasons in ``backend``'s dead-letter queue."""

    async def depth(self, backend: str) -> int:
        """How many entries ``backend`` has not acked yet."""

    async def writable(self) -> bool:
        """Whether ``append`` can succeed now (for ``/readyz``)."""


class DeadLetterQueue(Protocol):
    """What ``beacon-router dlq`` and the admin API use on top of a spool."""

    async def dead_letters(self, backend: str, limit: int = 100, since: str | None = None
                           ) -> list[DeadLetter]:
        """Dead letters of ``backend``, oldest first; ``since`` an ISO 8601 lower bound."""

    async def dead_letter_counts(self) -> dict[str, int]:
        """Backend name → dead letters waiting."""

    async def replay(self, backend: str, ids: Sequence[int] | None = None,
                     since: str | None = None) -> int:
        """Re-enqueue dead letters for ``backend`` only; how many were moved."""

    async def purge(self, backend: str, ids: Sequence[int] | None = None,
                    since: str | None = None, *, release_queue: bool = False) -> int:
        """Delete dead letters; ``release_queue`` also drops a removed backend's queue."""

    async def queues(self) -> dict[str, int]:
        """Every backend the spool keeps a queue for (configured or not) → events queued."""


class ManagedSpool(Spool, DeadLetterQueue, Protocol):
    """A spool with its dead-letter queue: what ``create_spool`` returns."""
