"""Drain the spool files of workers that no longer exist, then delete them.

When ``serve --workers`` goes from 4 to 2, files ``spool-2.db`` and ``spool-3.db`` still hold
events. Worker ``i`` of ``N`` adopts every file whose index ``k >= N`` has ``k % N == i``: it
takes the file's lock, delivers its events to the configured backends (no new event is ever
written there) and, once the file holds no event and no dead letter, deletes it. A file whose
lock is busy (its old process is still stopping) is tried again a moment later. A file that keeps
dead letters or events of a backend no longer configured stays until ``beacon-router dlq``
replays or purges them, like the main spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from ..config import Config
from ..delivery import Delivery, SendLimits
from ..metrics import Metrics
from ..spool.shards import RoleLocks, remove_spool_file, shard_files, worker_spool
from ..spool.sqlite import SqliteSpool
from ..web.state import ROUTER

log = structlog.get_logger(__name__)

_SCAN_EVERY = 1.0  # seconds between looks for files to adopt (or whose lock was busy)
_CHECK_EVERY = 0.5  # seconds between "is this file empty yet?" checks while draining


class Adoption:
    """Worker ``index`` of ``count``: finds, drains and deletes the files it inherits."""

    def __init__(self, config: Config, index: int, count: int, metrics: Metrics, *,
                 every: bool = False, current: Callable[[], Config] | None = None) -> None:
        """``every``: adopt every former worker's file (the delivery process does).
        ``current``: where the config in force is read before each look for files, so a file
        adopted after a reload goes to the reloaded backends (an inline worker's router; the
        delivery process sets ``config`` itself after its reload)."""
        self.config, self.index, self.count, self.metrics = config, index, count, metrics
        self.every = every
        self._current = current
        # The caller's own delivery's: an adopted file's sends count against each backend's
        # `concurrency` with the rest (delivery.SendLimits).
        self.limits: SendLimits | None = None
        self.draining: dict[int, asyncio.Task[None]] = {}
        self.kept: set[int] = set()  # drained files that stay for their dead letters
        self._stopping = asyncio.Event()
        self._scanner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._scanner = asyncio.create_task(self._scan(), name="spool-adoption")

    async def stop(self) -> None:
        """Stop delivering from adopted files (sends in flight get ``shutdown_timeout``)."""
        self._stopping.set()
        tasks = [t for t in (self._scanner, *self.draining.values()) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _only_dead_letters(self, spool: SqliteSpool) -> bool:
        for name in self.config.enabled_backends:
            if await spool.depth(name):
                return False
        return bool(await spool.dead_letter_counts())

    def mine(self, index: int) -> bool:
        """Whether file ``index`` is one this worker inherits."""
        return index >= self.count and (self.every or index % self.count == self.index)

    async def _scan(self) -> None:
        while not self._stopping.is_set():
            if self._current is not None:
                self.config = self._current()
            for index, path in shard_files(self.config.spool.path).items():
                if not self.mine(index) or index in self.draining:
                    continue
                lock = RoleLocks(path)  # nobody appends there; nobody else delivers
                if not lock.try_acquire():
                    continue  # still held by a process that is stopping: next scan
                if not os.path.exists(path):  # drained and deleted while we looked
                    lock.release(remove=True)
                    continue
                task = asyncio.create_task(
                    self._drain(index, path, lock), name=f"spool-adoption:{index}"
                )
                self.draining[index] = task
                task.add_done_callback(functools.partial(self._finished, index))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _SCAN_EVERY)

    def _finished(self, index: int, _task: asyncio.Task[None]) -> None:
        self.draining.pop(index, None)

    async def _drain(self, index: int, path: str, lock: RoleLocks) -> None:
        spool = worker_spool(self.config.spool, index, 1)
        assert isinstance(spool, SqliteSpool)
        backends = self.config.enabled_backends
        emptied = False
        try:
            await spool.open(list(backends))
            delivery = Delivery(list(backends.values()), spool, self.metrics, self.limits)
            log.info(
                "draining the spool file of a former worker",
                spool=path,
                queued={name: await spool.depth(name) for name in backends},
            )
            delivery.start()
            try:
                while not self._stopping.is_set():
                    if await spool.holds_nothing():
                        emptied = True
                        break
                    if index not in self.kept and await self._only_dead_letters(spool):
                        self.kept.add(index)
                        log.warning(
                            "former worker's spool file is drained but keeps dead letters",
                            spool=path,
                            hint="beacon-router dlq list|replay|purge --backend NAME",
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), _CHECK_EVERY)
            finally:
                await delivery.stop(self.config.server.shutdown_timeout)
                await spool.close()
        except Exception:  # a bad file must not take the worker down: retried next scan
            log.exception("draining a former worker's spool file failed", spool=path)
        finally:
            if emptied:
                remove_spool_file(path)
                log.info("former worker's spool file drained and removed", spool=path)
            lock.release(remove=emptied)


def install(app: web.Application, index: int, count: int) -> None:
    """Run :class:`Adoption` beside the app's own delivery (a SQLite spool only: a shared
    Redis stream has nothing to adopt). Call before the app starts."""
    router = app[ROUTER]
    if router.config.spool.type != "sqlite":
        return
    adoption = Adoption(router.config, index, count, router.metrics,
                        current=lambda: router.config)
    stopping: list[asyncio.Task[None]] = []

    async def begin_stop(_app: web.Application) -> None:
        # on_shutdown runs before requests are drained: adopted files stop meanwhile.
        stopping.append(asyncio.create_task(adoption.stop()))

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        if router.delivery is not None:  # started by now (web/app.py's cleanup context)
            adoption.limits = router.delivery.limits
        adoption.start()
        try:
            yield
        finally:
            await (stopping[0] if stopping else adoption.stop())

    app.on_shutdown.append(begin_stop)
    app.cleanup_ctx.append(ctx)
