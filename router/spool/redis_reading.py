"""How a router process reads its backends' consumer groups of the Redis spool's stream: its own
pending entries first after a restart, then entries a stopped router left idle (XAUTOCLAIM),
then new ones; poison entries (delivered too often without an ack) go to the dead letters.

:class:`GroupReading` is the part of :class:`~router.spool.redis.RedisSpool` that does this; it
is kept here so that each module reads in one sitting.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from . import redis_upkeep as upkeep
from .base import Entry
from .redis_client import RedisOutage
from .redis_dlq import EVENT_FIELD, TARGET_FIELD, RedisDeadLetters

log = structlog.get_logger(__name__)


@dataclass
class Reader:
    """This process's state for one backend's consumer group."""

    backlog_from: str | None = "0"  # re-reading our own pending entries (same name restarted)
    held: set[str] = field(default_factory=set)  # handed out, not acked: kept fresh
    stash: list[Entry] = field(default_factory=list)  # read by ``wait``, returned by ``read``
    limit: int = 100  # the worker's batch size, for ``wait``'s read
    next_claim: float = 0.0  # monotonic time of the next XAUTOCLAIM
    claim_from: str = "0-0"  # XAUTOCLAIM's scan cursor


class GroupReading:
    """Reading, acking and dead-lettering for :class:`~router.spool.redis.RedisSpool`."""

    _client: Redis | None
    stream: str
    consumer: str
    claim_idle: float
    max_deliveries: int
    _readers: dict[str, Reader]
    _outage: RedisOutage

    def _letters(self) -> RedisDeadLetters:
        raise NotImplementedError

    async def _create_groups(self, backends: Sequence[str], start: str) -> None:
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------------

    async def _next(self, backend: str, reader: Reader, limit: int) -> list[Entry]:
        while reader.backlog_from is not None:
            raw = await self._xreadgroup(backend, reader.backlog_from, limit)
            reader.backlog_from = raw[-1][0].decode() if raw else None
            entries = await self._take(backend, reader, raw, redelivered=True)
            if entries:
                return entries
        if time.monotonic() >= reader.next_claim:
            entries = await self._claim(backend, reader, limit)
            if entries:
                return entries
        raw = await self._xreadgroup(backend, ">", limit)
        return await self._take(backend, reader, raw, redelivered=False)

    async def _xreadgroup(
        self, backend: str, start: str, limit: int, block: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        assert self._client is not None
        reply: Any = await self._client.xreadgroup(
            backend, self.consumer, {self.stream: start}, count=limit, block=block
        )
        return list(reply[0][1]) if reply else []

    async def _claim(self, backend: str, reader: Reader, limit: int) -> list[Entry]:
        """Take over entries another consumer left idle for longer than ``claim_idle``."""
        assert self._client is not None
        reader.next_claim = time.monotonic() + min(self.claim_idle / 2, 5.0)
        next_from, raw, _deleted = await self._client.xautoclaim(
            self.stream,
            backend,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=reader.claim_from,
            count=limit,
        )
        reader.claim_from = next_from.decode()
        if reader.claim_from != "0-0":
            reader.next_claim = 0.0  # the scan is not finished: go on with the next read
        entries = await self._take(backend, reader, raw, redelivered=True)
        if entries:
            log.info(
                "took over events a stopped router left unacked",
                backend=backend,
                events=len(entries),
            )
        return entries

    async def _take(
        self,
        backend: str,
        reader: Reader,
        raw: list[tuple[bytes, dict[bytes, bytes]]],
        *,
        redelivered: bool,
    ) -> list[Entry]:
        """The entries this worker will handle. Acked at once: entries deleted from the stream
        and DLQ replays meant for another backend. Poison entries go to the dead letters."""
        entries, skip = [], []
        for raw_id, fields in raw:
            body, target = (fields or {}).get(EVENT_FIELD), (fields or {}).get(TARGET_FIELD)
            if body is None or (target is not None and target.decode() != backend):
                skip.append(raw_id.decode())
            else:
                entries.append(Entry(raw_id.decode(), body))
        if skip:
            await self._xack(backend, skip)
        if redelivered and entries:
            entries = await self._without_poison(backend, reader, entries)
        reader.held.update(str(e.id) for e in entries)
        return entries

    async def _without_poison(
        self, backend: str, reader: Reader, entries: list[Entry]
    ) -> list[Entry]:
        assert self._client is not None
        ids = sorted((str(e.id) for e in entries), key=upkeep.id_key)
        pending: Any = await self._client.xpending_range(
            self.stream,
            backend,
            min=ids[0],
            max=ids[-1],
            count=len(entries) + len(reader.held) + 100,
            consumername=self.consumer,
        )
        counts = {p["message_id"].decode(): int(p["times_delivered"]) for p in pending}
        poison = [e for e in entries if counts.get(str(e.id), 0) > self.max_deliveries]
        if not poison:
            return entries
        await self._move_to_dlq(
            backend,
            [
                (
                    e,
                    f"delivered {counts[str(e.id)]} times without an ack: every router that took "
                    "it stopped before finishing",
                    counts[str(e.id)],
                )
                for e in poison
            ],
        )
        log.error("poison events dead-lettered", backend=backend, events=len(poison))
        dead = {e.id for e in poison}
        return [e for e in entries if e.id not in dead]

    async def _read_failed(self, backend: str, exc: RedisError) -> None:
        if isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP"):
            # The group (or the whole stream) vanished: Redis restarted without persistence or
            # someone deleted it. Re-create it from the start so nothing appended since is missed.
            log.warning(
                "consumer group missing; re-creating it from the start of the stream",
                backend=backend,
            )
            with contextlib.suppress(RedisError):
                await self._create_groups([backend], start="0")
            self._readers[backend] = Reader(limit=self._readers[backend].limit)
            return
        self._outage.failed(exc)

    # -- acking and dead letters -------------------------------------------------------------

    async def _xack(self, backend: str, ids: list[str]) -> None:
        assert self._client is not None
        try:
            await self._client.xack(self.stream, backend, *ids)
        except ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):  # no group: nothing left to ack
                raise

    async def _move_to_dlq(self, backend: str, items: list[tuple[Entry, str, int]]) -> None:
        try:
            await self._letters().move(backend, items)
        except ResponseError as exc:
            # No group: its pending list went with it, and the entries come again when a
            # reader re-creates the group. Anything else (out of memory) is waited out.
            if not str(exc).startswith("NOGROUP"):
                raise
        if backend in self._readers:
            self._readers[backend].held.difference_update(str(e.id) for e, _, _ in items)
