"""Shared fixtures (helpers live in support.py so any test module can import them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
import structlog
from support import REDIS_URL, RouterProcess, free_port, require_service


@pytest.fixture(autouse=True)
def _structlog_as_tests_expect(monkeypatch):
    """A test that runs ``cli.main`` in this process configures structlog as the router does:
    with a level and ``cache_logger_on_first_use``, which would pin every module's logger to
    that level for the rest of the session and hide its debug events from later tests'
    ``capture_logs``. Here the router's configuration applies without the cache, and the
    defaults come back after each test."""
    import router.logs

    configure = router.logs.configure

    def uncached(*args, **kwargs):
        configure(*args, **kwargs)
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(router.logs, "configure", uncached)
    yield
    structlog.reset_defaults()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on, and no other test will listen on meanwhile."""
    return free_port()


@pytest.fixture
def router_process(tmp_path):
    """Factory: ``router_process(config_text)`` writes the config and returns a RouterProcess."""
    made: list[RouterProcess] = []

    def make(config_text: str, port: int | None = None) -> RouterProcess:
        path = tmp_path / "router.yaml"
        path.write_text(config_text)
        proc = RouterProcess(str(path), port or free_port(), str(tmp_path))
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own, every key under it deleted after the test."""
    require_service("Redis", "127.0.0.1", 6379)
    name = f"test:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
