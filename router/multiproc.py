"""``serve --workers N`` metrics: one scrape shows the whole router, whichever worker answers.

prometheus-client's multiprocess mode: each worker writes its metric values to memory-mapped
files in ``$PROMETHEUS_MULTIPROC_DIR``, and the worker a scrape reaches merges every file
(counters and histograms summed, gauges by their ``multiprocess_mode``). The supervisor
(router/workers.py) owns the directory: it creates a fresh one before forking (or empties the
one ops set), marks a dead worker's live gauges gone, and removes the directory it created at
exit. A worker refreshes its own spool gauges every few seconds, so the merged spool figures
are at most that old.

Not in multiprocess mode: per-process collectors (``process_*``), which describe one process;
the platform collector (``python_info``) is the same for all and stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import PLATFORM_COLLECTOR, CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = structlog.get_logger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_SECONDS = 5.0  # how stale a worker's spool gauges may be in another worker's answer
FLUSH_SECONDS = 1.0  # how stale a worker's ingest counts may be (and what kill -9 loses of them)


def enabled() -> bool:
    """Whether this process writes and reads multiprocess metric files."""
    return bool(os.environ.get(ENV))


def registry() -> CollectorRegistry:
    """Every worker's metrics, merged from the files, plus the platform collector."""
    merged = CollectorRegistry()
    _Collector(merged)
    merged.register(PLATFORM_COLLECTOR)
    return merged


class _Collector(MultiProcessCollector):
    """prometheus-client's collector, minus a file another process is creating right now.

    A process makes its file with ``open()`` and then grows it with ``truncate()``: read in
    between, the file is empty and the whole scrape failed (``struct.error``, a 500). The
    delivery process creates its files while the ingest workers answer scrapes, so that
    moment is not rare. Such a file holds no value yet: skipping it loses nothing."""

    def collect(self) -> Any:
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _has_header(f)]
        return self.merge(files, accumulate=True)


def _has_header(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return len(fh.read(8)) == 8
    except FileNotFoundError:  # a dead process's live gauges, removed meanwhile
        return False


class Directory:
    """The supervisor's side: the directory the workers write to, fresh for this run."""

    def __init__(self) -> None:
        given = os.environ.get(ENV)
        self.created = not given
        self.path = given or tempfile.mkdtemp(prefix="beacon-router-metrics-")
        if given:  # files of a previous run would be counted again: the docs say empty it
            os.makedirs(given, exist_ok=True)
            for name in os.listdir(given):
                if name.endswith(".db"):
                    os.unlink(os.path.join(given, name))
        os.environ[ENV] = self.path  # inherited by every worker forked from now on
        # prometheus-client picks its value store once, when it is first imported (here, before
        # the variable was set): pick again, so metrics the workers create write to the files.
        values.ValueClass = values.get_value_class()

    def worker_died(self, pid: int) -> None:
        """Drop the dead worker's ``live*`` gauges (its counters keep counting in the sums)."""
        mark_process_dead(pid, self.path)

    def remove(self) -> None:
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(ENV, None)


def install(app: web.Application, refresh: Callable[[web.Application], object]) -> None:
    """Under multiprocess mode, run ``refresh(app)`` (an awaitable) every few seconds."""
    if enabled():
        app.cleanup_ctx.append(_refresher(refresh))


def _refresher(refresh: Callable[[web.Application], object]
               ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                try:
                    await refresh(app)  # type: ignore[misc]
                except Exception as exc:  # the spool is away: the next round tries again
                    log.warning("spool gauges not measured", error=str(exc))
                await asyncio.sleep(REFRESH_SECONDS)

        task = asyncio.create_task(loop(), name="metrics:refresh")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def flush_every_second(app: web.Application, flush: Callable[[], None]) -> None:
    """Under multiprocess mode, call ``flush()`` every :data:`FLUSH_SECONDS` and once more at
    shutdown: the ingest tallies reach the files (router/tally.py)."""
    if not enabled():
        return

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                flush()

        task = asyncio.create_task(loop(), name="metrics:flush")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        flush()  # a clean stop loses no count

    app.cleanup_ctx.append(ctx)
