"""Run the app until SIGTERM/SIGINT, then drain: readiness fails first, requests finish,
delivery flushes in-flight batches, the spool closes, and the process exits 0."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from .app import ROUTER, create_app
from .config import Config
from .spool import adoption
from .spool.shards import ShardLock, shard_path, worker_spool
from .workers import WorkerSlot

log = structlog.get_logger(__name__)


async def serve(config: Config, host: str, port: int, *, reuse_port: bool = False,
                worker: WorkerSlot | None = None) -> None:
    """Serve ``config`` on host:port until told to stop; ``worker`` is this process's slot
    under ``serve --workers`` (its own spool file, the port shared with SO_REUSEPORT)."""
    slot = worker or WorkerSlot()
    lock = None
    if config.spool.type == "sqlite":
        # Only the lock holder may deliver from a spool file (spool/shards.py). A previous
        # process on this file may still be draining: wait for it as long as it may take.
        lock = ShardLock(shard_path(config.spool.path, slot.index))
        await lock.acquire(config.server.drain_delay + config.server.shutdown_timeout * 2 + 5)
    try:
        await _serve(config, host, port, reuse_port=reuse_port or slot.count > 1, slot=slot)
    finally:
        if lock is not None:
            lock.release()


async def _serve(config: Config, host: str, port: int, *, reuse_port: bool,
                 slot: WorkerSlot) -> None:
    app = create_app(config, spool=worker_spool(config.spool, slot.index, slot.count))
    adoption.install(app, slot.index, slot.count)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=config.server.shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("listening", listen=f"{host}:{port}")
        await stop.wait()
        # /readyz answers 503 from now on, so a load balancer stops sending before we close.
        app[ROUTER].draining = True
        log.info("stopping", drain_delay=config.server.drain_delay)
        if config.server.drain_delay:
            await asyncio.sleep(config.server.drain_delay)
    finally:
        await runner.cleanup()
    log.info("stopped")
