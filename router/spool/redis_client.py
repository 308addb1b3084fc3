"""Connecting to Redis, one way for the spool and the shared state, and telling ops of an outage.

Each caller gets its own bounded pool (the spool's blocking stream reads must not starve
ingest's shared-state checks): a burst of requests waits for a connection instead of failing.
"""

from __future__ import annotations

import time

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = 2.0  # seconds; a black-holed Redis must not hang a request
IO_TIMEOUT = 5.0  # seconds per command; longer than the spool's longest blocking read
MAX_CONNECTIONS = 64  # per pool; the spool's blocking reads hold one per backend
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0  # the retry pace while Redis is unreachable


def connect(url: str) -> Redis:
    """A client on a pool of its own. One retry: a pooled connection may have died with a
    Redis restart since its last use."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=IO_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=IO_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)


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
