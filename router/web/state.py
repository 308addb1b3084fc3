"""What the web layer keeps on an aiohttp app: the ``Router`` built from the config, and which
worker process this is (``--workers``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from ..config import Config
from ..delivery import Delivery
from ..filters import Pipeline
from ..ingest import Limits
from ..metrics import Metrics
from ..ratelimit import RateLimits
from ..spool import Spool

if TYPE_CHECKING:  # the optional redis extra: imported only where a config uses it
    from ..delivery_link import DeliveryLink
    from ..spool.redis_shared import RedisShared


@dataclass
class Router:
    """Everything a request handler needs, built once from the config."""

    config: Config
    metrics: Metrics
    pipeline: Pipeline
    limits: Limits
    rate_limits: RateLimits
    spool: Spool | None = None
    delivery: Delivery | None = None  # delivery in this process (``--delivery inline``)
    link: DeliveryLink | None = None  # else: the delivery process's state, asked on a socket
    shared: RedisShared | None = None  # dedupe and rate limits across instances (Redis spool)
    draining: bool = False
    started_at: float = field(default_factory=time.time)


ROUTER = web.AppKey("router", Router)


@dataclass(frozen=True)
class WorkerSlot:
    """Which of the ``count`` worker processes this one is (``index`` from 0), and, under
    ``--delivery process``, how it reaches the delivery process: the pipe it writes a wake-up
    byte to (the delivery process reads the other end) and the unix socket of its state."""

    index: int = 0
    count: int = 1
    role: str = "both"  # "both" (delivers itself), "ingest", or "delivery" (the process)
    wake_fd: int | None = None
    state_socket: str | None = None


WORKER = web.AppKey("worker", WorkerSlot)  # set on the app by serve.server


def drop_counter(metrics: Metrics) -> Callable[[str, str], None]:
    """The pipeline's drop hook: counts each drop by filter and reason."""
    def count(filter_name: str, reason: str) -> None:
        metrics.dropped.labels("pipeline", filter_name, reason).inc()
    return count
