"""Run the app until SIGTERM/SIGINT, then drain: readiness fails first, requests finish,
delivery flushes in-flight batches, the spool closes, and the process exits 0.

SIGHUP reloads the config file (router/web/reload.py). Under systemd (``Type=notify``) the
process says READY=1 once it listens, RELOADING=1 … READY=1 around a reload, STOPPING=1 when it
drains (router/serve/sdnotify.py). With ``admin.token`` set, the admin API gets its own listener
on ``admin.listen`` unless that says ``same``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
import time

import orjson
import structlog
from aiohttp import web

from ..config import Config, split_listen
from ..delivery_link import DeliveryLink
from ..speedups import in_use as native_in_use
from ..spool.shards import RoleLocks, shard_path, worker_spool
from ..spool.sqlite import SqliteSpool
from ..web.admin import create_admin_app
from ..web.app import ROUTER, create_app
from ..web.reload import RELOADER, ReloadResult
from ..web.state import WORKER, WorkerSlot
from . import adoption, reload_verdict, sdnotify
from .header_deadline import GuardedSite, raise_open_files_limit

log = structlog.get_logger(__name__)

# Idle keep-alive connections, and connections whose headers never finish, are closed after
# this. Longer than the 60 s idle timeout of common load balancers, which must close first.
KEEPALIVE_TIMEOUT = 75.0


async def serve(config: Config, host: str, port: int, *, reuse_port: bool = False,
                worker: WorkerSlot | None = None) -> None:
    """Serve ``config`` on host:port until told to stop; ``worker`` is this process's slot
    under ``serve --workers`` (its own spool file, the port shared with SO_REUSEPORT) or
    ``--delivery process`` (then this process only ingests: ``slot.role`` is "ingest")."""
    slot = worker or WorkerSlot()
    lock = None
    if config.spool.type == "sqlite":
        # Only the lock holders may append to and deliver from a spool file (spool/shards.py):
        # an ingest worker takes the first role's lock, an inline one both. A previous process
        # on this file may still be draining: wait for it as long as it may take.
        roles = ("ingest",) if slot.role == "ingest" else ("ingest", "delivery")
        lock = RoleLocks(shard_path(config.spool.path, slot.index), roles)
        await lock.acquire(config.server.drain_delay + config.server.shutdown_timeout * 2 + 5)
    try:
        await _serve(config, host, port, reuse_port=reuse_port or slot.count > 1, slot=slot)
    finally:
        if lock is not None:
            lock.release()


async def _serve(config: Config, host: str, port: int, *, reuse_port: bool,
                 slot: WorkerSlot) -> None:
    spool = worker_spool(config.spool, slot.index, slot.count,
                         role="ingest" if slot.role == "ingest" else "both")
    link = None
    if slot.role == "ingest":
        assert slot.state_socket is not None
        if isinstance(spool, SqliteSpool):  # a byte per group commit wakes delivery
            spool.wake_fd = slot.wake_fd
        link = DeliveryLink(slot.state_socket)
    app = create_app(config, spool=spool, link=link)
    if link is None:  # else the delivery process adopts former workers' files
        adoption.install(app, slot.index, slot.count)
    app[WORKER] = slot
    # From here on SIGHUP never kills the process (its default action), even mid-start: a
    # reload asked for before delivery runs is refused and says why.
    reloads: set[asyncio.Task[object]] = set()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_soon, app, reloads)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=config.server.shutdown_timeout,
                           keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    admin: web.AppRunner | None = None
    try:
        site = GuardedSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024,
                           header_timeout=config.server.header_timeout)
        await site.start()
        # Under --workers N one process serves the admin port; it sees every worker's spool.
        admin = await _admin_listener(app, config) if slot.index == 0 else None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        frozen = freeze_startup_heap()
        log.info("listening", listen=f"{host}:{port}", open_files=raise_open_files_limit(),
                 gc_frozen=frozen, native=native_in_use())
        sdnotify.notify("READY=1", f"STATUS=listening on {host}:{port}")
        await stop.wait()
        sdnotify.notify("STOPPING=1", "STATUS=draining")
        # /readyz answers 503 from now on, so a load balancer stops sending before we close.
        app[ROUTER].draining = True
        drain_delay = app[ROUTER].config.server.drain_delay  # a reload may have changed it
        log.info("stopping", drain_delay=drain_delay)
        if drain_delay:
            await asyncio.sleep(drain_delay)
    finally:
        if admin is not None:
            await admin.cleanup()
        await asyncio.gather(*reloads, return_exceptions=True)
        await runner.cleanup()
    log.info("stopped")


def freeze_startup_heap() -> int:
    """Move every object alive once the server listens (modules, config, pipeline, app: a few
    hundred thousand) out of the cyclic collector's reach; returns how many.

    Why: a full (generation 2) collection traverses every tracked object, and in a serving
    process nearly all of them were made at startup and live until exit. Measured under
    ``wrk -c64`` single beacons (bench/round4-ingest.md): the ingest process ran a full
    collection every ~2.5 s, each a pause of 40 to 60 ms (gc.callbacks) in which no request is
    read or answered, which set the p99 (~75 ms on a loaded machine). Frozen, those objects
    are never traversed again; the collector still runs for what requests leave behind
    (generations 0 and 1 are untouched, so cycles are still reclaimed and memory stays
    bounded). The thresholds stay CPython's: young collections were ~0.3 ms and not the tail.
    Under a supervisor (main since ed1438c) most of these were already frozen before the fork
    (supervisor.fork_sharing); this adds what the serving process built itself, and is the
    only freeze under ``--delivery inline`` with one worker.
    A frozen object is still freed when its last reference goes; only a cycle among frozen
    objects would never be collected: collecting first keeps startup's own garbage out, and a
    reload (which replaces the config and pipeline) thaws, collects and freezes again.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _reload_soon(app: web.Application, running: set[asyncio.Task[object]]) -> None:
    """SIGHUP: reload in a task (a signal handler must not block); the task is kept until done."""
    sdnotify.reloading()
    started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    task: asyncio.Task[object] = asyncio.create_task(app[RELOADER].reload(), name="reload")
    running.add(task)
    task.add_done_callback(running.discard)
    task.add_done_callback(functools.partial(_reloaded, started))


def _reloaded(started: int, task: asyncio.Task[object]) -> None:
    """Tell systemd (or the ``--workers`` supervisor) the reload is over and its verdict, and
    a waiting ``beacon-router reload`` too (router/serve/reload_verdict.py)."""
    gc.unfreeze()  # the replaced config's cycles become collectable; the new one is frozen
    log.debug("heap refrozen after a reload", gc_frozen=freeze_startup_heap())
    result = None if task.cancelled() or task.exception() else task.result()
    if isinstance(result, ReloadResult):
        ok, errors, later = result.ok, result.errors, result.restart_required
    else:  # the reload itself failed: the log has the traceback
        ok, errors, later = False, ["the reload failed; see the log"], []
    status = "config reload " + ("applied" if ok else "refused; the running config stays")
    verdict = {"ok": ok, "errors": errors, "restart_required": later}
    sdnotify.notify("READY=1", f"STATUS={status}",
                    f"{sdnotify.VERDICT}={orjson.dumps(verdict).decode()}")
    reload_verdict.send(started, ok, status, errors, later)


async def _admin_listener(app: web.Application, config: Config) -> web.AppRunner | None:
    """The admin API on ``admin.listen``, when a token turns it on and it has its own port."""
    if config.admin.token is None or config.admin.listen == "same":
        return None
    runner = web.AppRunner(create_admin_app(app), access_log=None, handle_signals=False,
                           keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    host, port = split_listen(config.admin.listen)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("admin listening", listen=config.admin.listen)
    return runner
