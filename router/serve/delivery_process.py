"""The delivery process of ``serve --delivery process``: delivery off the ingest event loop.

A child of the supervisor (router/serve/supervisor.py) beside the ingest workers. For every
worker's SQLite spool file it takes that file's delivery lock (spool/shards.py), opens it in
the delivery role (reads, cursors, dead letters, compaction; the ingest worker only appends)
and runs today's :class:`~router.delivery.Delivery` on it, so a slow backend, a large batch's
decode or a store insert never takes CPU time from the loop that answers clients. Files of
former workers (``--workers`` went down) are adopted and drained here (serve/adoption.py).
A Redis spool needs none of that: this process is one more consumer of the stream, as
another router instance would be, and the ingest workers only append to it.

What ops see of it:

* new rows: the ingest workers write a byte to a pipe after each group commit; this process
  watches the pipe's read end, with the spool's poll as the fallback;
* metrics: it writes into the multiprocess files, so ``/metrics`` on any ingest worker shows
  delivery's counters and the spool gauges it measures every few seconds;
* state: ``GET /state`` on a unix socket (router/delivery_link.py), which ``/readyz`` and
  the admin API of the ingest workers read; ``GET /tap`` on the same socket streams a
  backend's tap, which the ingest workers' ``/admin/tap`` relays (router/tap/proxy.py);
* SIGHUP (forwarded by the supervisor) reloads the backends with router/web/reload.py's code;
  SIGTERM stops delivery (batches in flight get ``shutdown_timeout``) and exits 0.

Durability is the spool's: a cursor moves only after the backend accepted, so a kill -9 here
means a redelivery of the batches in flight, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from ..config import Config
from ..delivery import Delivery, SendLimits
from ..delivery_link import STATE_PATH, merge_backends
from ..filters import Pipeline
from ..ingest import Limits
from ..metrics import Metrics, event_age
from ..ratelimit import RateLimits
from ..spool.shards import ShardLock, shard_path, worker_spool
from ..spool.sqlite import SqliteSpool
from ..tap.admin import close_taps, serve_tap
from ..tap.hub import TAP
from ..tap.proxy import TAP_PATH
from ..web.reload import Reloader, ReloadResult
from ..web.state import Router, WorkerSlot, drop_counter
from . import adoption, sdnotify

log = structlog.get_logger(__name__)

MEASURE_EVERY = 5.0  # seconds between two measurements of the spool gauges


@dataclass
class _File:
    """One worker's spool file as delivered from here."""

    index: int
    lock: ShardLock | None  # SQLite: this file's delivery lock
    spool: Any  # a ManagedSpool: SqliteSpool in the delivery role, or RedisSpool
    router: Router
    reloader: Reloader


class DeliveryProcess:
    """Delivery for the ``slot.count`` ingest workers' spool files (see the module docstring)."""

    def __init__(self, config: Config, slot: WorkerSlot) -> None:
        self.config, self.slot = config, slot
        self.metrics = Metrics()
        self.files: list[_File] = []
        self.started_at = time.time()
        self._reloads: set[asyncio.Task[None]] = set()
        # One per backend for every file, adopted ones too: `concurrency` holds process-wide.
        self.limits = SendLimits()
        self._adopting: adoption.Adoption | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        server = self.config.server
        wait = server.drain_delay + server.shutdown_timeout * 2 + 5  # a draining predecessor
        adopting = adoption.Adoption(self.config, 0, self.slot.count, self.metrics, every=True)
        adopting.limits, self._adopting = self.limits, adopting
        sqlite = self.config.spool.type == "sqlite"
        site_runner: web.AppRunner | None = None
        try:
            for index in range(self.slot.count if sqlite else 1):
                self.files.append(await self._open(index, wait))
            if self.slot.wake_fd is not None:
                loop.add_reader(self.slot.wake_fd, self._woken, self.slot.wake_fd)
            if sqlite:  # a shared Redis stream has nothing to adopt
                adopting.start()
            site_runner = await self._serve_state()
            measuring = asyncio.create_task(self._measure_forever(), name="delivery:measure")
            log.info("delivery process started", pid=os.getpid(), files=len(self.files),
                     backends=sorted(self.config.enabled_backends))
            sdnotify.notify("READY=1", "STATUS=delivering")
            await stop.wait()
            measuring.cancel()
            log.info("delivery process stopping")
        finally:
            if self.slot.wake_fd is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self.slot.wake_fd)
            await asyncio.gather(*self._reloads, return_exceptions=True)
            if site_runner is not None:
                await site_runner.cleanup()
            await adopting.stop()
            timeout = self.config.server.shutdown_timeout
            for file in self.files:
                if file.router.delivery is not None:
                    await file.router.delivery.stop(timeout)
                await file.spool.close()
                if file.lock is not None:
                    file.lock.release()
        log.info("delivery process stopped")

    async def _open(self, index: int, wait: float) -> _File:
        lock = None
        backends = self.config.enabled_backends
        if self.config.spool.type == "sqlite":
            lock = ShardLock(shard_path(self.config.spool.path, index), "delivery")
            await lock.acquire(wait)
            spool = worker_spool(self.config.spool, index, self.slot.count, role="delivery")
        else:  # its own consumer name: slot index ``count`` (spool/shards.py)
            spool = worker_spool(self.config.spool, self.slot.index, self.slot.count)
        try:
            await spool.open(list(backends))
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        metrics = self.metrics
        router = Router(config=self.config, metrics=metrics, spool=spool,
                        limits=Limits.from_server(self.config.server),
                        rate_limits=RateLimits(self.config.limits),
                        pipeline=Pipeline(self.config.pipeline, on_drop=drop_counter(metrics)))
        router.delivery = Delivery(list(backends.values()), spool, metrics, self.limits)
        router.delivery.start()
        return _File(index, lock, spool, router, Reloader(router, counted=False))

    def _woken(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(fd, 4096)  # however many commits: one look at each file
        for file in self.files:
            if isinstance(file.spool, SqliteSpool):
                file.spool.refresh_soon()

    # -- reload ----------------------------------------------------------------------------

    def _reload_soon(self) -> None:
        sdnotify.reloading()
        task = asyncio.create_task(self._reload(), name="delivery:reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        """Every file's backends, with the reload code an inline router runs; the verdict
        goes to the supervisor, which adds it to the ingest workers' (serve/sdnotify.py)."""
        try:
            results = await reload_together([file.reloader for file in self.files])
            ok = all(r.ok for r in results)
            errors = list(dict.fromkeys(e for r in results for e in r.errors))
            later = results[0].restart_required if results else []
        except Exception:
            log.exception("reload failed")
            ok, errors, later = False, ["the reload failed; see the log"], []
        if self.files and ok:
            self.config = self.files[0].router.config
            if self._adopting is not None:  # files adopted from now on: the new backends
                self._adopting.config = self.config
        status = "config reload " + ("applied" if ok else "refused; the running config stays")
        verdict = {"ok": ok, "errors": errors, "restart_required": later}
        sdnotify.notify("READY=1", f"STATUS={status}",
                        f"{sdnotify.VERDICT}={orjson.dumps(verdict).decode()}")

    # -- what ops see ----------------------------------------------------------------------

    def backends(self) -> set[str]:
        """The backends running here, over every file."""
        return {name for file in self.files if file.router.delivery is not None
                for name in file.router.delivery.workers}

    async def state(self) -> dict[str, Any]:
        """The answer to ``GET /state`` (router/delivery_link.py)."""
        now = time.time()
        parts = []
        for file in self.files:
            delivery = file.router.delivery
            part = {}
            for name, worker in (delivery.workers if delivery else {}).items():
                h = worker.health
                queued = await file.spool.depth(name)
                oldest = await file.spool.peek(name) if queued else None
                part[name] = {"healthy": h.healthy, "consecutive_failures":
                              h.consecutive_failures, "last_error": h.last_error,
                              "last_success": h.last_success, "queued": queued,
                              "oldest_event_age_seconds": round(event_age(oldest, now), 3)}
            parts.append(part)
        last = self.files[0].reloader.last if self.files else None
        return {"pid": os.getpid(), "uptime_seconds": round(now - self.started_at, 3),
                "files": len(self.files), "backends": merge_backends(parts),
                "last_reload": last.to_dict() if last else None,
                "tap_subscribers": TAP.subscribers}

    async def _serve_state(self) -> web.AppRunner | None:
        if not self.slot.state_socket:
            return None

        async def answer(_request: web.Request) -> web.Response:
            return web.Response(body=orjson.dumps(await self.state()),
                                content_type="application/json")

        async def tap(request: web.Request) -> web.StreamResponse:
            # The ingest process's /admin/tap relays this (tap/proxy.py). The hub is
            # process-global, so with several files a backend's events from all show up here.
            return await serve_tap(request, self.backends())

        app = web.Application()
        app.router.add_get(STATE_PATH, answer)
        app.router.add_get(TAP_PATH, tap)
        app.on_shutdown.append(close_taps)  # a tap's stream must not hold up the stop
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        with contextlib.suppress(FileNotFoundError):  # a crashed predecessor's socket
            os.unlink(self.slot.state_socket)
        await web.UnixSite(runner, self.slot.state_socket).start()
        return runner

    async def _measure_forever(self) -> None:
        while True:
            try:
                await self._measure()
            except Exception as exc:  # the spool is away: the next round tries again
                log.warning("spool gauges not measured", error=str(exc))
            await asyncio.sleep(MEASURE_EVERY)

    async def _measure(self) -> None:
        """The spool gauges over every file: bytes, depth and dead letters summed, the oldest
        event's age the largest."""
        m, now = self.metrics, time.time()
        depth: dict[str, int] = {}
        dead: dict[str, int] = {}
        oldest: dict[str, float] = {}
        used = 0
        for file in self.files:
            spool = file.spool
            used += getattr(spool, "used_bytes", 0)
            configured = list(file.router.delivery.workers) if file.router.delivery else []
            queues = await spool.queues()
            for name in configured:
                queues[name] = await spool.depth(name)
                entry = await spool.peek(name) if queues[name] else None
                oldest[name] = max(oldest.get(name, 0.0), event_age(entry, now))
            for name, queued in queues.items():
                depth[name] = depth.get(name, 0) + queued
            for name, count in (await spool.dead_letter_counts()).items():
                dead[name] = dead.get(name, 0) + count
        m.spool_bytes.set(used)
        for name in set(depth) | set(dead):
            m.spool_depth.labels(name).set(depth.get(name, 0))
            m.dead_letters.labels(name).set(dead.get(name, 0))
        for name, age in oldest.items():
            m.spool_oldest_age.labels(name).set(age)


async def reload_together(reloaders: list[Reloader]) -> list[ReloadResult]:
    """Every spool file's reload at once, each starting its new workers only once every file's
    leaving workers have stopped: the files share one limit per backend (delivery.SendLimits),
    and file after file, a backend whose `concurrency` changed would briefly send under its
    old limit in one file and its new limit in another."""
    left, everyone = len(reloaders), asyncio.Event()

    def arrived() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            everyone.set()

    async def reload(reloader: Reloader) -> ReloadResult:
        waited = False

        async def between() -> None:
            nonlocal waited
            waited = True
            arrived()
            await everyone.wait()

        try:
            return await reloader.reload(between)
        finally:
            if not waited:  # refused, or nothing to restart: it must not hold the others
                arrived()

    return list(await asyncio.gather(*(reload(r) for r in reloaders)))


def run(config: Config, slot: WorkerSlot, runner: Any) -> int:
    """The delivery process's body under the supervisor; its exit code. ``runner`` runs a
    coroutine on the event loop serve uses (uvloop when installed)."""
    structlog.contextvars.bind_contextvars(role="delivery")
    runner(DeliveryProcess(config, slot).run())
    return 0
