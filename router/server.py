"""Run the app until SIGTERM/SIGINT, then drain: readiness fails first, requests finish,
delivery flushes in-flight batches, the spool closes, and the process exits 0."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from .app import ROUTER, create_app
from .config import Config

log = structlog.get_logger(__name__)


async def serve(config: Config, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve ``config`` on host:port until told to stop."""
    app = create_app(config)
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
