"""Stores to read statistics from: a SQLite file in tmp_path, or a throwaway PostgreSQL schema.

Rows go in through the real store backend (``StoreBackend.send``), so they are exactly what
the router writes; only ingest and the spool are skipped.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import require_service

from router.backends.store import StoreBackend, StoreOptions
from router.config import Config
from router.config.loader import loads
from router.event import Event
from router.stats import Stats

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_URL = os.environ.get("BEACON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def beacon(
    day: str,
    installation: str,
    version: str | None = "1.0.0",
    os_: str | None = "linux",
    deployment: str | None = "docker",
    at: str = "12:00:00",
    event: str = "beacon",
    **extra: Any,
) -> Event:
    """One stored beacon of ``installation`` on ``day`` (UTC) at ``at``; None leaves a field out."""
    data: dict[str, Any] = {"installation_id": installation, **extra}
    if version is not None:
        data["version"] = version
    if os_ is not None:
        data["platform"] = {"os": os_, "arch": "x86_64"}
    if deployment is not None:
        data["deployment_type"] = deployment
    return Event.new(data, received_at=f"{day}T{at}.000Z", name=event)


@dataclass
class Store:
    """One store under test: its backend's YAML, and a way to add events to it."""

    kind: str
    url: str
    schema: str | None = None

    @property
    def yaml(self) -> str:
        schema = f", schema: {self.schema}" if self.schema else ""
        return f'archive: {{type: store, url: "{self.url}"{schema}}}'

    def config(self, extra: str = "") -> Config:
        """A config with this store as backend ``archive``, plus ``extra`` top-level YAML."""
        return loads(f"backends:\n  {self.yaml}\n" + textwrap.dedent(extra))

    def stats(self, today: date, extra: str = "", **kwargs: Any) -> Stats:
        """Statistics over this store as of ``today``, re-checking every day on every report
        unless ``recheck`` / ``full_recheck`` say otherwise."""
        kwargs = {"recheck": 0, "full_recheck": 0, **kwargs}
        stats = Stats.from_config(self.config(extra), today=lambda: today, **kwargs)
        assert stats is not None
        return stats

    async def add(self, events: Iterable[Event]) -> None:
        options = StoreOptions.model_validate(
            {"url": self.url, **({"schema": self.schema} if self.schema else {})}
        )
        backend = StoreBackend("archive", options)
        try:
            result = await backend.send(list(events))
            assert not result.dead and not result.retry, result
        finally:
            await backend.aclose()

    async def execute(self, sql: str) -> None:
        """Run SQL against the store's table, written ``{table}`` in ``sql``."""
        if self.kind == "sqlite":
            import sqlite3

            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                conn.execute(sql.format(table='"beacons"'))
            return
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql.format(table=f'"{self.schema}"."beacons"'))
        finally:
            await conn.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    """A store in ``tmp_path/beacons.db`` (created by the first ``add``)."""
    return Store("sqlite", f"sqlite:///{tmp_path / 'beacons.db'}")


@pytest.fixture
def postgresql_store() -> Iterator[Store]:
    """A store in a fresh PostgreSQL schema, dropped afterwards; skipped (failed in CI) if the
    server is absent."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    schema = f"stats_{uuid.uuid4().hex[:12]}"
    yield Store("postgresql", PG_URL, schema)
    with ThreadPoolExecutor(1) as pool:  # a loop of its own: the test's may still be running
        pool.submit(asyncio.run, _drop_schema(schema)).result()


async def _drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    """Each test that takes ``store`` runs on SQLite and on PostgreSQL: their SQL differs."""
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]
