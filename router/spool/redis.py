"""The scale-out spool: one Redis stream that every router instance appends to and reads from.

Keys, all under ``key_prefix`` (one prefix per router deployment):

    <prefix>:<stream>            the events; one consumer group per backend (group = backend name)
    <prefix>:dlq:<backend>       a backend's dead letters (a stream: event, reason, attempts, …)
    <prefix>:dlq-seq:<backend>   the counter behind the dead letters' numeric ids

Each router process is one consumer (``host:pid``) in every group. ``read`` is XREADGROUP,
``ack`` is XACK. Entries handed out but not acked stay in the group's pending list; while this
process holds them it refreshes their idle time, so an entry idle longer than ``claim_idle``
belongs to a process that died, and any instance takes it over with XAUTOCLAIM. Every delivery
bumps an entry's delivery count: past ``max_deliveries`` the entry is poison (each router that
took it died or stalled) and goes to the dead-letter stream instead. The stream is trimmed only
below the oldest entry some group has not acked. If Redis goes away, ``append`` raises
``Unavailable`` (ingest answers 503) and delivery pauses, retrying with backoff; nothing
restarts. The background upkeep is in ``redis_upkeep``, the dead letters in ``redis_dlq``;
docs/scaling.md is the ops' view.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ..errors import Unavailable
from . import redis_upkeep as upkeep
from .base import Entry
from .redis_client import RedisOutage, connect
from .redis_dlq import (
    EVENT_FIELD,
    RETRY_AFTER_DOWN,
    TARGET_FIELD,
    DeadLetterCommands,
    RedisDeadLetters,
)
from .redis_reading import GroupReading, Reader
from .redis_shared import RedisShared as RedisShared  # re-exported: spool.factory's lazy import

log = structlog.get_logger(__name__)

_MAX_BLOCK = 2.0  # longest XREADGROUP BLOCK, seconds; below redis_client.IO_TIMEOUT

_RETRY_AFTER_FULL = 30.0  # what clients are told while the stream is full
_MAINTAIN_EVERY = 1.0  # seconds between measure + trim passes
_SWEEP_EVERY = 300.0  # seconds between sweeps of long-gone consumers
_PEEK_SCAN = 10  # entries ``peek`` looks at past DLQ replays meant for other backends


class RedisSpool(GroupReading, DeadLetterCommands):
    """A durable log on a Redis stream shared by several router processes (see module doc)."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "beacons",
        key_prefix: str = "beacon-router",
        consumer: str | None = None,
        claim_idle: float = 30.0,
        max_deliveries: int = 10,
        max_events: int | None = None,
        max_size: int | None = None,
    ) -> None:
        self.url = url
        self.prefix = key_prefix
        self.stream = f"{key_prefix}:{stream}"
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}"
        self.claim_idle = claim_idle
        self.max_deliveries = max_deliveries
        self.max_events = max_events
        self.max_size = max_size
        self.length = 0  # stream entries, as last measured (acked ones until trimmed)
        self.used_bytes = 0  # the stream's memory in Redis (MEMORY USAGE, sampled)
        self._client: Redis | None = None
        self._readers: dict[str, Reader] = {}
        self._depths: dict[str, int] = {}
        self._outage = RedisOutage(
            "redis unavailable: ingest answers 503 and delivery waits until it is back")
        self._maintainer: asyncio.Task[None] | None = None
        self._closing = False
        self._dead: RedisDeadLetters | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, backends: Sequence[str]) -> None:
        """Connect and create missing groups; an unreachable Redis is waited for, not fatal."""
        self._client = connect(self.url)
        self._dead = RedisDeadLetters(self._client, self.prefix, self.stream)
        self._readers = {b: Reader() for b in backends}
        try:
            # A backend added later starts at the end: it sees new events, not an arbitrary tail.
            await self._create_groups(backends, start="$")
            orphaned = sorted(set(await self.queues()) - set(backends))
            self._outage.recovered()
        except (RedisError, Unavailable) as exc:
            # Not fatal: a router that exits here would crash-loop for as long as Redis is down.
            self._outage.failed(exc)
            orphaned = []
        if orphaned and backends:
            log.warning(
                "spool keeps events for backends no longer configured",
                backends=orphaned,
                hint="beacon-router dlq purge --backend NAME",
            )
        if backends:
            self._maintainer = asyncio.create_task(self._maintain(), name="spool:redis")

    async def attach(self, backend: str) -> None:
        """Start reading for ``backend`` while open (a config reload). A new backend's group
        starts at the end of the stream. A known one goes on from its group's position, after
        re-reading what this process was handed and did not ack, so a batch its stopped worker
        had in flight is sent again (at-least-once). Redis unreachable: as at ``open``, the
        first read creates the group from the start of the stream, so that nothing accepted
        meanwhile is missed."""
        old = self._readers.get(backend)
        reader = Reader()
        if old is not None:
            reader.limit, reader.held = old.limit, set(old.held)  # kept fresh meanwhile
        # Replaced, not mutated: the maintenance loop may be iterating the old dict.
        self._readers = {**self._readers, backend: reader}
        try:
            await self._create_groups([backend], start="$")
        except RedisError as exc:
            self._outage.failed(exc)

    async def peek(self, backend: str) -> Entry | None:
        """The oldest entry ``backend`` has not acked (handed out or not), or None; for the
        oldest-event-age metric."""
        client = self._open_client()
        try:
            summary: Any = await client.xpending(self.stream, backend)
            if summary["pending"]:
                start = summary["min"].decode()  # handed out, not acked: older than the rest
            else:
                found = [
                    g
                    for g in await upkeep.groups(client, self.stream)
                    if g["name"].decode() == backend
                ]
                if not found:
                    return None
                start = "(" + found[0]["last-delivered-id"].decode()  # the next one to hand out
            rows: Any = await client.xrange(self.stream, min=start, count=_PEEK_SCAN)
        except ResponseError as exc:
            if str(exc).startswith("NOGROUP") or "no such key" in str(exc).lower():
                return None
            raise Unavailable(f"redis: {exc}", retry_after=RETRY_AFTER_DOWN) from exc
        except RedisError as exc:
            raise Unavailable(f"redis: {exc}", retry_after=RETRY_AFTER_DOWN) from exc
        for raw_id, fields in rows:
            body, target = fields.get(EVENT_FIELD), fields.get(TARGET_FIELD)
            if body is not None and (target is None or target.decode() == backend):
                return Entry(raw_id.decode(), body)
        return None  # only DLQ replays for other backends ahead: too rare to scan further

    async def close(self) -> None:
        """Stop maintenance and hand what this process holds to the other instances."""
        self._closing = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            # redis-py can swallow a cancellation (redis/redis-py#2028), so the maintenance
            # loop also stops on ``_closing``; ``wait`` never raises the task's CancelledError.
            await asyncio.wait({self._maintainer})
            self._maintainer = None
        if self._client is None:
            return
        for backend, reader in self._readers.items():
            try:
                released = await upkeep.hand_over(
                    self._client, self.stream, backend, self.consumer, reader.held, self.claim_idle
                )
            except RedisError:
                break  # they are claimed after claim_idle instead
            if released:
                log.info(
                    "handed unacked events over to the other routers",
                    backend=backend,
                    events=released,
                )
        await self._client.aclose()
        self._client = self._dead = None

    # -- ingest side -------------------------------------------------------------------------

    async def append(self, bodies: Sequence[bytes]) -> None:
        """XADD the events in one MULTI/EXEC; returns once Redis has them (see docs/scaling.md
        for what Redis's ``appendfsync`` makes of "has them")."""
        if self._client is None or self._closing:
            raise Unavailable("spool is not open", retry_after=RETRY_AFTER_DOWN)
        self._check_room()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for body in bodies:
                    pipe.xadd(self.stream, {EVENT_FIELD: body})
                pipe.xlen(self.stream)
                results = await pipe.execute()
        except RedisError as exc:
            self._outage.failed(exc)
            raise Unavailable(
                "the spool cannot take events right now; try again later",
                retry_after=RETRY_AFTER_DOWN,
            ) from exc
        self._outage.recovered()
        self.length = int(results[-1])

    def _check_room(self) -> None:
        if self.max_events and self.length >= self.max_events:
            raise Unavailable(
                f"spool is full ({self.length} events, max_events {self.max_events}); try later",
                retry_after=_RETRY_AFTER_FULL,
            )
        if self.max_size and self.used_bytes >= self.max_size:
            raise Unavailable(
                f"spool is full ({self.used_bytes} bytes, max_size {self.max_size}); try later",
                retry_after=_RETRY_AFTER_FULL,
            )

    async def writable(self) -> bool:
        """Redis answers and the stream is below its limits."""
        if self._client is None or self._closing:
            return False
        try:
            self._check_room()
            await self._client.ping()
        except Unavailable:
            return False
        except RedisError as exc:
            self._outage.failed(exc)
            return False
        self._outage.recovered()
        return True

    # -- delivery side -----------------------------------------------------------------------

    async def read(self, backend: str, limit: int) -> list[Entry]:
        """Our own unacked entries after a restart, then dead consumers' (XAUTOCLAIM), then new
        ones (XREADGROUP ``>``). Returns ``[]`` while Redis is unreachable."""
        reader = self._readers[backend]
        reader.limit = limit
        if reader.stash:
            entries, reader.stash = reader.stash[:limit], reader.stash[limit:]
            return entries
        if self._outage.waiting():
            return []
        try:
            entries = await self._next(backend, reader, limit)
        except RedisError as exc:
            await self._read_failed(backend, exc)
            return []
        self._outage.recovered()
        return entries

    async def wait(self, backend: str, timeout: float, at_least: int = 1) -> None:
        """Block on XREADGROUP until entries arrive from any instance; they are kept for the
        next ``read``. While Redis is unreachable, sleep instead (the delivery backoff).
        (``at_least`` is not used: XREADGROUP already hands over up to a batch at once.)"""
        reader = self._readers[backend]
        if reader.stash:
            return
        if self._outage.waiting():
            await asyncio.sleep(min(timeout, self._outage.wait_time()))
            return
        block = max(1, int(min(timeout, _MAX_BLOCK) * 1000))
        try:
            raw = await self._xreadgroup(backend, ">", reader.limit, block=block)
            reader.stash.extend(await self._take(backend, reader, raw, redelivered=False))
        except RedisError as exc:
            await self._read_failed(backend, exc)
            await asyncio.sleep(min(timeout, self._outage.wait_time()))
            return
        self._outage.recovered()

    async def ack(self, backend: str, entries: Sequence[Entry]) -> None:
        """XACK; while Redis is unreachable this waits for it (delivery is paused anyway)."""
        if not entries:
            return
        ids = [str(e.id) for e in entries]
        await self._until_done(self._xack, backend, ids)
        if backend in self._readers:
            self._readers[backend].held.difference_update(ids)

    async def dead_letter(
        self, backend: str, entries: Sequence[tuple[Entry, str]], attempts: int
    ) -> None:
        """Move the entries to ``backend``'s dead-letter stream; this also acks them."""
        if entries:
            items = [(e, reason, attempts) for e, reason in entries]
            await self._until_done(self._move_to_dlq, backend, items)

    async def depth(self, backend: str) -> int:
        """Entries ``backend`` has not acked: not yet delivered (lag) plus pending."""
        # While Redis is away, the last known value is the best answer.
        with contextlib.suppress(Unavailable):
            self._depths.update(await self.queues())
        return self._depths.get(backend, 0)

    async def _until_done(self, operation: Any, *args: Any) -> None:
        """Run a write delivery must not skip, waiting out a Redis outage (unless closing)."""
        while True:
            if self._client is None:
                raise Unavailable("spool is closed", retry_after=RETRY_AFTER_DOWN)
            try:
                await operation(*args)
            except RedisError as exc:
                self._outage.failed(exc)
                if self._closing:
                    raise Unavailable("spool is closing", retry_after=RETRY_AFTER_DOWN) from exc
                await asyncio.sleep(self._outage.wait_time())
                continue
            self._outage.recovered()
            return

    # -- maintenance -------------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Keep held entries fresh, measure the stream, trim it, forget long-gone consumers."""
        assert self._client is not None
        client = self._client
        refresh_every = min(self.claim_idle / 3, _MAINTAIN_EVERY)
        last_refresh = last_measure = last_sweep = time.monotonic()
        while not self._closing:
            await asyncio.sleep(refresh_every)
            if self._closing:
                return
            now = time.monotonic()
            try:
                for backend, reader in self._readers.items():
                    await upkeep.refresh(client, self.stream, backend, self.consumer, reader.held)
                last_refresh = now
                if now - last_measure >= _MAINTAIN_EVERY:
                    self.length, self.used_bytes = await upkeep.measure(client, self.stream)
                    await upkeep.trim(client, self.stream)
                    last_measure = now
                if now - last_sweep >= _SWEEP_EVERY:
                    for backend in self._readers:
                        await upkeep.sweep(client, self.stream, backend, keep=self.consumer)
                    last_sweep = now
            except ResponseError as exc:
                # Redis answered, so it is not an outage: e.g. a group gone until a reader
                # re-creates it (NOGROUP). Delivery must not pause for that.
                log.warning("spool maintenance: redis refused a command", error=str(exc))
            except RedisError as exc:
                self._outage.failed(exc)
            except Exception:  # a bug must not stop maintenance for good
                log.exception("spool maintenance failed")
            if time.monotonic() - last_refresh > self.claim_idle:
                log.warning(
                    "held events were not refreshed in time; another router may take "
                    "them over and send them again"
                )

    async def _create_groups(self, backends: Sequence[str], start: str) -> None:
        assert self._client is not None
        for backend in backends:
            try:
                await self._client.xgroup_create(self.stream, backend, id=start, mkstream=True)
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):  # BUSYGROUP: it exists already
                    raise

    async def queues(self) -> dict[str, int]:
        """Every consumer group on the stream (configured or not) → events it has not acked."""
        client = self._open_client()
        try:
            groups = await upkeep.groups(client, self.stream)
        except RedisError as exc:
            raise Unavailable(f"redis: {exc}", retry_after=RETRY_AFTER_DOWN) from exc
        # ``lag`` is nil when Redis cannot tell (entries deleted past the group's position).
        return {
            g["name"].decode(): int(g["pending"])
            + int(g["lag"] if g.get("lag") is not None else self.length)
            for g in groups
        }

    def _letters(self) -> RedisDeadLetters:
        if self._dead is None:
            raise Unavailable("spool is not open", retry_after=RETRY_AFTER_DOWN)
        return self._dead

    def _open_client(self) -> Redis:
        if self._client is None:
            raise Unavailable("spool is not open", retry_after=RETRY_AFTER_DOWN)
        return self._client
