"""Shared fixtures for backend tests: event batches and a throwaway PostgreSQL schema."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import pytest

from router.event import Event

# Tried in order; BEACON_TEST_POSTGRES_URL overrides. Trust auth on loopback, database `test`.
POSTGRES_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)

MakeEvents = Callable[..., list[Event]]
T = TypeVar("T")


@pytest.fixture
def make_events() -> MakeEvents:
    """``make_events(n, received_at=None, **extra_data)``: n beacons with distinct uuids."""

    def make(n: int, received_at: str | None = None, **extra: object) -> list[Event]:
        return [
            Event.new(
                {
                    "installation_id": f"inst-{i}",
                    "version": f"2.{i}.0",
                    "platform": {"os": "linux"},
                    "counts": {"users": i},
                    **extra,
                },
                received_at=received_at,
            )
            for i in range(n)
        ]

    return make


async def _first_reachable(urls: list[str]) -> tuple[str | None, str]:
    errors = []
    for url in urls:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        await conn.close()
        return url, ""
    return None, "; ".join(errors)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """A working DSN for the test PostgreSQL; skipped when unreachable, unless CI=true."""
    override = os.environ.get("BEACON_TEST_POSTGRES_URL")
    urls = [override] if override else list(POSTGRES_CANDIDATES)
    dsn, errors = _in_own_loop(_first_reachable(urls))
    if dsn is None:
        message = f"PostgreSQL is not reachable ({errors})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(f"{message}; set CI=true to make this a failure")
    return dsn


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema name (``test_<hex>``) for one test, dropped with everything in it after."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield schema
    _in_own_loop(_drop_schema(postgres_dsn, schema))


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _in_own_loop(coro: Coroutine[Any, Any, T]) -> T:
    # A thread of its own: an async test may already be running the loop of this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
