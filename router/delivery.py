"""Delivery: one worker per backend reads the spool, filters, batches, sends and retries.

The backend decides *whether* a failure is worth retrying (its ``SendResult``); the worker
decides *how*: exponential backoff with full jitter, never sooner than the server's
Retry-After, until ``retry.give_up_after``, then the dead-letter queue. A spool entry is acked
only once every event of its batch is delivered, filtered out or dead-lettered, so a crash at
any point means a redelivery, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from .backends.base import Backend, SendResult
from .config import BackendSpec
from .event import Event, as_to_json_writes
from .filters import DropHook, Pipeline
from .logs import Throttled
from .metrics import Metrics
from .spool import Entry, Spool
from .tap import TAP

log = structlog.get_logger(__name__)
# A backend down for hours retries every few seconds per batch in flight: one line per
# backend every 10 s says so, with how many retries it stands for (``suppressed``).
throttled = Throttled(log, interval=10.0)

UNHEALTHY_AFTER = 3  # consecutive failed sends before a backend is reported unhealthy
YIELD_EVERY = 200  # events decoded (or mapped) between two turns of the event loop's other work


@dataclass
class BackendHealth:
    """What ``/readyz`` and ``status`` show about one backend."""

    healthy: bool = True
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success: float | None = None


def backoff(attempt: int, initial: float, maximum: float, retry_after: float | None) -> float:
    """Full-jitter exponential backoff, but never sooner than the server asked."""
    ceiling = min(maximum, initial * (2 ** min(attempt - 1, 32)))
    delay = random.uniform(0, ceiling)
    return max(delay, retry_after or 0.0)


class BackendRoute:
    """A backend's own ``when:`` and ``filters:``: which events it gets, and in what shape.

    Delivery runs it on every event it reads; ``dry-run`` and ``beacon-router test`` run the
    same object, so what they print is what the worker does. An event skipped by ``when:`` is
    counted as a drop (filter ``when``, reason ``no_match``) like any other."""

    WHEN = "when"

    def __init__(self, spec: BackendSpec, on_drop: DropHook | None = None) -> None:
        self._when = spec.when.compile() if spec.when is not None else None
        self._filters = Pipeline(spec.filters, on_drop=on_drop)
        self._on_drop = on_drop
        # Nothing to look at: the worker may hand the backend spooled events undecoded.
        self.passes_everything = self._when is None and not spec.filters

    def matches(self, event: Event) -> bool:
        """Whether the backend's ``when:`` lets ``event`` through (counted when not)."""
        if self._when is None or self._when(event):
            return True
        if self._on_drop is not None:
            self._on_drop(self.WHEN, "no_match")
        return False

    def __call__(self, event: Event) -> Event | None:
        """The event as the backend receives it, or None if ``when:`` or a filter said no."""
        return self._filters(event) if self.matches(event) else None

    def explain(self, event: Event) -> tuple[Event | None, str | None]:
        """Its own filters' verdict on an event that ``matches``: which one dropped it, and why."""
        return self._filters.explain(event)


class SendLimit:
    """One backend's limit on sends in flight, shared by every worker of that backend that
    was handed the same :class:`SendLimits` (the delivery process's files, adopted ones too).

    ``sends`` is held for one send attempt only, never over a retry's backoff sleep; ``probe``
    lets an unhealthy backend get one probe batch per backoff interval across all of them."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.sends = asyncio.Semaphore(concurrency)  # FIFO: a busy file cannot starve another
        self.probe = asyncio.Lock()


class SendLimits:
    """The :class:`SendLimit` of each backend by name, made on first use."""

    def __init__(self) -> None:
        self._limits: dict[str, SendLimit] = {}

    def __call__(self, spec: BackendSpec) -> SendLimit:
        limit = self._limits.get(spec.name)
        if limit is None or limit.concurrency != spec.concurrency:
            # A reload changed it: new sends take the new limit; workers stopping with the
            # old one keep it for their send in flight.
            limit = self._limits[spec.name] = SendLimit(spec.concurrency)
        return limit


class Worker:
    """Moves one backend's events from the spool to the backend (see module docstring)."""

    def __init__(self, spec: BackendSpec, backend: Backend, spool: Spool, metrics: Metrics,
                 limit: SendLimit | None = None) -> None:
        self.spec, self.backend, self.spool, self.metrics = spec, backend, spool, metrics
        self.name = spec.name
        self.health = BackendHealth()
        self.batch_limit = min(spec.batch.max_events, backend.max_batch_events or 1 << 30)
        self.route = BackendRoute(spec, on_drop=self._count_drop)
        # A backend that can send events as the spool holds them gets their bytes undecoded,
        # unless a `when:` or a filter of its own has to look at them first.
        self._spooled = backend.sends_spooled and self.route.passes_everything
        self._unfiltered = not spec.filters
        self._read_lock = asyncio.Lock()
        self.limit = limit or SendLimit(spec.concurrency)
        # while unhealthy, one batch at a time probes the backend
        self._probe = self.limit.probe
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"deliver:{self.name}:{i}")
                       for i in range(self.spec.concurrency)]

    async def stop(self, timeout: float) -> None:
        """Finish sends in flight (within ``timeout``); anything unsent stays in the spool."""
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("delivery stopped with a batch in flight; it stays in the spool",
                        backend=self.name)

    async def deliver(self, entries: list[Entry]) -> None:
        """Deliver one batch now, as the run loop does (``replay`` hands archived events here):
        acked once every event is delivered, filtered out or dead-lettered; left unacked if a
        stop comes while it waits to retry."""
        await self._deliver(entries)

    def select(self, event: Event) -> Event | None:
        """The event as this backend would be handed it, or None if its `when:` or its own
        filters leave it out (``replay --dry-run``)."""
        return self.route(event)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._read_lock:
                    entries = await self._collect()
                if entries:
                    await self._deliver(entries)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill delivery for good: log and go on
                log.exception("delivery worker error", backend=self.name)
                await self._sleep(1.0)

    async def _collect(self) -> list[Entry]:
        """Up to ``batch.max_events`` entries, waiting at most ``max_wait`` after the first."""
        entries = await self.spool.read(self.name, self.batch_limit)
        if not entries:
            await self._wait(self.spec.batch.max_wait if self.spec.batch.max_wait else 1.0)
            entries = await self.spool.read(self.name, self.batch_limit)
            if not entries:
                return []
        deadline = time.monotonic() + self.spec.batch.max_wait
        while len(entries) < self.batch_limit and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self._wait(left, at_least=self.batch_limit - len(entries))
            more = await self.spool.read(self.name, self.batch_limit - len(entries))
            entries.extend(more)
        return entries

    async def _wait(self, timeout: float, at_least: int = 1) -> None:
        waiter = asyncio.ensure_future(self.spool.wait(self.name, timeout, at_least))
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (waiter, stopper):
            fut.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _deliver(self, entries: list[Entry]) -> None:
        started = time.monotonic()
        pending: list[tuple[Entry, Event | bytes]] = []
        corrupt: list[tuple[Entry, str]] = []
        if self._spooled:
            bodies = [_as_bytes(entry.body) for entry in entries]
            if self.backend.decodes_spooled or as_to_json_writes(bodies):
                pending = list(zip(entries, bodies, strict=True))  # all as to_json writes them
            else:
                for entry, body in zip(entries, bodies, strict=True):
                    if not as_to_json_writes((body,)):
                        try:  # not as Event.to_json writes it: decodable at all?
                            Event.from_json(body)
                        except (ValueError, KeyError, TypeError) as exc:
                            corrupt.append((entry, f"undecodable spool entry: {exc}"))
                            continue
                    pending.append((entry, body))
        else:
            for n, entry in enumerate(entries, 1):
                if n % YIELD_EVERY == 0:  # a batch of 1,000 takes milliseconds to decode:
                    await asyncio.sleep(0)  # let requests waiting on the loop in between
                try:
                    event = Event.from_json(entry.body)
                except (ValueError, KeyError, TypeError) as exc:
                    corrupt.append((entry, f"undecodable spool entry: {exc}"))
                    continue
                kept = self.route(event)
                if kept is not None:
                    pending.append((entry, kept))
        if TAP.active and pending:  # someone taps: show what this backend is handed
            # Without filters of its own the event is as spooled: its bytes need no encoding.
            TAP.publish(self.name, [entry.body if self._unfiltered else item
                                    for entry, item in pending])
        if corrupt:
            await self._dead(corrupt, attempts=0)
        skipped = len(entries) - len(corrupt) - len(pending)  # `when:` or a filter said no
        sent, dead = 0, len(corrupt)
        attempt, first_failure = 0, None
        while pending:
            attempt += 1
            result = await self._send([item for _, item in pending])
            if result.dead:
                await self._dead([(pending[i][0], reason) for i, reason in result.dead.items()],
                                 attempts=attempt)
                dead += len(result.dead)
            delivered = len(pending) - len(result.dead) - len(result.retry)
            sent += delivered
            if delivered:
                self.metrics.delivered.labels(self.name).inc(delivered)
            if not result.retry:
                self._succeeded()
                break
            pending = [pending[i] for i in result.retry]
            now = time.monotonic()
            first_failure = first_failure or now
            self._failed(result.reason)
            if self._stopping.is_set():
                return  # not acked: the batch is sent again after the restart
            if now - first_failure >= self.spec.retry.give_up_after:
                reason = f"gave up after {attempt} attempts: {result.reason}"
                await self._dead([(entry, reason) for entry, _ in pending], attempts=attempt)
                dead += len(pending)
                break
            self.metrics.retried.labels(self.name).inc(len(pending))
            delay = backoff(attempt, self.spec.retry.initial, self.spec.retry.max,
                            result.retry_after)
            throttled("warning", "delivery failed, will retry", key=f"retry:{self.name}",
                      backend=self.name, events=len(pending), attempt=attempt,
                      retry_in=round(delay, 3), reason=result.reason)
            if self.health.healthy:
                await self._sleep(delay)
            else:  # hold the probe lock while waiting: other tasks queue behind this one
                async with self._probe:
                    await self._sleep(delay)
            if self._stopping.is_set():
                return
        await self.spool.ack(self.name, entries)
        # One line per batch, whatever its size: never one per event.
        log.info("batch done", backend=self.name, events=len(entries), delivered=sent,
                 skipped=skipped, dead_lettered=dead, attempts=attempt,
                 seconds=round(time.monotonic() - started, 3))
        self.metrics.spool_depth.labels(self.name).set(await self.spool.depth(self.name))

    async def _send(self, batch: Sequence[Event | bytes]) -> SendResult:
        if self.health.healthy:
            async with self.limit.sends:
                return await self._send_once(batch)
        # An unhealthy backend gets one probe batch per backoff interval, not one per
        # concurrent task: the other tasks wait here until the probe has answered.
        async with self._probe, self.limit.sends:
            return await self._send_once(batch)

    async def _send_once(self, batch: Sequence[Event | bytes]) -> SendResult:
        started = time.perf_counter()
        try:
            if self._spooled:
                result = await self.backend.send_spooled(batch)  # type: ignore[arg-type]
            else:
                result = await self.backend.send(batch)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a backend bug: retry (it may be transient) and say so loudly
            log.exception("backend raised instead of returning a SendResult", backend=self.name)
            result = SendResult.retry_all(len(batch), f"backend error: {type(exc).__name__}")
        self.metrics.send_latency.labels(self.name).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(self.name).observe(len(batch))
        if not result.ok:
            kind = "retry" if result.retry else "dead"
            self.metrics.failed.labels(self.name, kind).inc()
        return result

    async def _dead(self, items: list[tuple[Entry, str]], attempts: int) -> None:
        await self.spool.dead_letter(self.name, items, attempts)
        self.metrics.dead_lettered.labels(self.name).inc(len(items))
        log.error("events dead-lettered", backend=self.name, events=len(items),
                  reason=items[0][1] if items else "")

    def _succeeded(self) -> None:
        if not self.health.healthy:
            log.info("backend recovered", backend=self.name)
        self.health = BackendHealth(healthy=True, last_success=time.time())
        self.metrics.backend_up.labels(self.name).set(1)

    def _failed(self, reason: str) -> None:
        h = self.health
        h.consecutive_failures += 1
        h.last_error = reason
        h.healthy = h.consecutive_failures < UNHEALTHY_AFTER
        self.metrics.backend_up.labels(self.name).set(1 if h.healthy else 0)

    def _count_drop(self, filter_name: str, reason: str) -> None:
        self.metrics.dropped.labels(f"backend:{self.name}", filter_name, reason).inc()


class Delivery:
    """All workers, started and stopped together."""

    def __init__(self, specs: Sequence[BackendSpec], spool: Spool, metrics: Metrics,
                 limits: SendLimits | None = None) -> None:
        # Deliveries given the same ``limits`` (one per spool file in the delivery process)
        # share each backend's `concurrency`; without, this one has its own.
        self.limits = limits or SendLimits()
        self.workers = {s.name: Worker(s, s.build(), spool, metrics, self.limits(s))
                        for s in specs}

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    async def stop(self, timeout: float) -> None:
        await asyncio.gather(*(w.stop(timeout) for w in self.workers.values()))
        for worker in self.workers.values():
            try:
                await worker.backend.aclose()
            except Exception:
                log.exception("backend close failed", backend=worker.name)


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body
