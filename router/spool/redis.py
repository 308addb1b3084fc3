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
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from ..errors import Unavailable
from . import redis_upkeep as upkeep
from .base import DeadLetter, Entry
from .redis_dlq import EVENT_FIELD, TARGET_FIELD, RedisDeadLetters

log = structlog.get_logger(__name__)

_CONNECT_TIMEOUT = 2.0  # seconds; a black-holed Redis must not hang a request
_IO_TIMEOUT = 5.0  # seconds per command; must exceed _MAX_BLOCK
_MAX_BLOCK = 2.0  # longest XREADGROUP BLOCK, seconds
_MAX_CONNECTIONS = 64  # per process; blocking reads hold one per backend
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0  # delivery's retry pace while Redis is unreachable
_RETRY_AFTER_DOWN = 5.0  # what clients are told while Redis is unreachable
_RETRY_AFTER_FULL = 30.0  # what clients are told while the stream is full
_MAINTAIN_EVERY = 1.0  # seconds between measure + trim passes
_SWEEP_EVERY = 300.0  # seconds between sweeps of long-gone consumers
_PEEK_SCAN = 10  # entries ``peek`` looks at past DLQ replays meant for other backends


@dataclass
class _Reader:
    """This process's state for one backend's consumer group."""

    backlog_from: str | None = "0"  # re-reading our own pending entries (same name restarted)
    held: set[str] = field(default_factory=set)  # handed out, not acked: kept fresh
    stash: list[Entry] = field(default_factory=list)  # read by ``wait``, returned by ``read``
    limit: int = 100  # the worker's batch size, for ``wait``'s read
    next_claim: float = 0.0  # monotonic time of the next XAUTOCLAIM
    claim_from: str = "0-0"  # XAUTOCLAIM's scan cursor


class RedisOutage:
    """Logs a Redis outage once when it starts and once when it ends; paces new attempts.

    ``what`` says what the outage means for ops (it is the warning's text)."""

    def __init__(self, what: str, *, label: str = "redis available again") -> None:
        self.what, self.label = what, label
        self.since: float | None = None
        self.delay = 0.0
        self.next_try = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def wait_time(self) -> float:
        return max(0.0, self.next_try - time.monotonic())

    def waiting(self) -> bool:
        """Down, and too soon to try again."""
        return self.down and self.wait_time() > 0

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.delay = now, _BACKOFF_FIRST
            log.warning(self.what, error=str(exc) or type(exc).__name__)
        else:
            self.delay = min(self.delay * 2, _BACKOFF_MAX)
        self.next_try = now + self.delay

    def recovered(self) -> None:
        if self.since is not None:
            log.info(self.label, outage_seconds=round(time.monotonic() - self.since, 1))
            self.since, self.delay, self.next_try = None, 0.0, 0.0


class RedisSpool:
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
        self._readers: dict[str, _Reader] = {}
        self._depths: dict[str, int] = {}
        self._outage = RedisOutage(
            "redis unavailable: ingest answers 503 and delivery waits until it is back")
        self._maintainer: asyncio.Task[None] | None = None
        self._closing = False
        self._dead: RedisDeadLetters | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, backends: Sequence[str]) -> None:
        """Connect and create missing groups; an unreachable Redis is waited for, not fatal."""
        # A bounded pool: a burst of requests waits for a connection instead of failing. One
        # retry: a pooled connection may have died with a Redis restart since its last use.
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=_MAX_CONNECTIONS,
            timeout=_IO_TIMEOUT,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_IO_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = Redis.from_pool(pool)
        self._dead = RedisDeadLetters(self._client, self.prefix, self.stream)
        self._readers = {b: _Reader() for b in backends}
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
        reader = _Reader()
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
            raise Unavailable(f"redis: {exc}", retry_after=_RETRY_AFTER_DOWN) from exc
        except RedisError as exc:
            raise Unavailable(f"redis: {exc}", retry_after=_RETRY_AFTER_DOWN) from exc
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
            raise Unavailable("spool is not open", retry_after=_RETRY_AFTER_DOWN)
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
                retry_after=_RETRY_AFTER_DOWN,
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

    # -- reading -----------------------------------------------------------------------------

    async def _next(self, backend: str, reader: _Reader, limit: int) -> list[Entry]:
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

    async def _claim(self, backend: str, reader: _Reader, limit: int) -> list[Entry]:
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
        reader: _Reader,
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
        self, backend: str, reader: _Reader, entries: list[Entry]
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
            self._readers[backend] = _Reader(limit=self._readers[backend].limit)
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

    async def _until_done(self, operation: Any, *args: Any) -> None:
        """Run a write delivery must not skip, waiting out a Redis outage (unless closing)."""
        while True:
            if self._client is None:
                raise Unavailable("spool is closed", retry_after=_RETRY_AFTER_DOWN)
            try:
                await operation(*args)
            except RedisError as exc:
                self._outage.failed(exc)
                if self._closing:
                    raise Unavailable("spool is closing", retry_after=_RETRY_AFTER_DOWN) from exc
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

    # -- dead-letter queue (beacon-router dlq ...) -------------------------------------------

    async def dead_letters(
        self, backend: str, limit: int = 100, since: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters of ``backend``, oldest first; ``since`` is an ISO time lower bound."""
        return await self._letters().letters(backend, limit, since)

    async def dead_letter_counts(self) -> dict[str, int]:
        return await self._letters().counts()

    async def replay(
        self, backend: str, ids: Sequence[int] | None = None, since: str | None = None
    ) -> int:
        """Put dead letters back on the stream for ``backend`` only; returns how many."""
        return await self._letters().replay(backend, ids, since)

    async def purge(
        self,
        backend: str,
        ids: Sequence[int] | None = None,
        since: str | None = None,
        *,
        release_queue: bool = False,
    ) -> int:
        """Delete dead letters of ``backend``; ``release_queue`` also destroys its consumer
        group, so events kept only for a backend no longer configured can be trimmed."""
        purged = await self._letters().purge(backend, ids, since)
        if release_queue:
            try:
                await self._open_client().xgroup_destroy(self.stream, backend)
            except ResponseError:
                pass  # no stream yet: there is no group to release
            except RedisError as exc:
                raise Unavailable(f"redis: {exc}", retry_after=_RETRY_AFTER_DOWN) from exc
        return purged

    async def queues(self) -> dict[str, int]:
        """Every consumer group on the stream (configured or not) → events it has not acked."""
        client = self._open_client()
        try:
            groups = await upkeep.groups(client, self.stream)
        except RedisError as exc:
            raise Unavailable(f"redis: {exc}", retry_after=_RETRY_AFTER_DOWN) from exc
        # ``lag`` is nil when Redis cannot tell (entries deleted past the group's position).
        return {
            g["name"].decode(): int(g["pending"])
            + int(g["lag"] if g.get("lag") is not None else self.length)
            for g in groups
        }

    def _letters(self) -> RedisDeadLetters:
        if self._dead is None:
            raise Unavailable("spool is not open", retry_after=_RETRY_AFTER_DOWN)
        return self._dead

    def _open_client(self) -> Redis:
        if self._client is None:
            raise Unavailable("spool is not open", retry_after=_RETRY_AFTER_DOWN)
        return self._client
