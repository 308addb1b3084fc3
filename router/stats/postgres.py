"""The statistics' reader for a store in PostgreSQL (the optional ``postgres`` extra).

Its own module so that only a config with a PostgreSQL store imports asyncpg:
:func:`router.stats.service.open_reader` imports it when it opens such a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date
from typing import Any

import asyncpg

from ..backends.http import host_of
from ..errors import StoreUnavailable
from .queries import DayRow, day_start


def postgres_rows_sql(
    qualified: str, dimensions: Sequence[str], event: str | None
) -> tuple[str, list[object]]:
    """The rows query and its leading parameters; the day bounds are the last two (``$n``)."""
    columns: list[str] = []
    params: list[object] = []
    for dimension in dimensions:
        if dimension == "version":
            columns.append("version")
        else:
            params.append(dimension.split("."))
            columns.append(f"data #>> ${len(params)}::text[]")
    event_term = ""
    if event is not None:
        params.append(event)
        event_term = f" AND event = ${len(params)}"
    n = len(params)
    sql = (
        "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), distinct_id"
        f"{''.join(', ' + c for c in columns)} FROM {qualified} "
        f"WHERE distinct_id IS NOT NULL{event_term} "
        f"AND received_at >= ${n + 1} AND received_at < ${n + 2} ORDER BY received_at"
    )
    return sql, params


class PostgresReader:
    """Reads through a small asyncpg pool of its own, opened on first use."""

    def __init__(
        self,
        dsn: str,
        qualified: str,
        dimensions: Sequence[str],
        event: str | None,
        *,
        password: str | None,
        timeout: float,
    ) -> None:
        self.dsn, self.qualified = dsn, qualified
        self.sql, self.params = postgres_rows_sql(qualified, dimensions, event)
        self._password, self._timeout = password, timeout
        self._pool: asyncpg.Pool | None = None

    async def span(self) -> tuple[date, date] | None:
        t = self.qualified
        row = await self._query(
            "fetchrow",
            f"SELECT (SELECT min(received_at) FROM {t}), (SELECT max(received_at) FROM {t})",
        )
        if row is None or row[0] is None:
            return None
        return row[0].astimezone(UTC).date(), row[1].astimezone(UTC).date()

    async def day_counts(self, start: date, stop: date) -> dict[date, int]:
        rows = await self._query(
            "fetch",
            "SELECT (received_at AT TIME ZONE 'UTC')::date, count(*) "
            f"FROM {self.qualified} WHERE received_at >= $1 AND received_at < $2 "
            "GROUP BY 1",
            day_start(start),
            day_start(stop),
        )
        return {r[0]: r[1] for r in rows or ()}

    async def rows(self, start: date, stop: date) -> list[DayRow]:
        rows = await self._query("fetch", self.sql, *self.params, day_start(start), day_start(stop))
        return [(r[0], r[1], tuple(r[2:])) for r in rows or ()]  # #>> gives text already

    async def plan(self, start: date, stop: date) -> str:
        rows = await self._query(
            "fetch", "EXPLAIN " + self.sql, *self.params, day_start(start), day_start(stop)
        )
        return "\n".join(r[0] for r in rows or ())

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _query(self, method: str, sql: str, *args: object) -> Any:
        try:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    password=self._password,
                    min_size=1,
                    max_size=2,
                    timeout=self._timeout,
                    command_timeout=self._timeout * 6,
                    server_settings={"application_name": "beacon-router/stats"},
                )
            return await getattr(self._pool, method)(sql, *args)
        except asyncpg.UndefinedTableError:
            return None  # nothing stored yet
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as exc:
            # The kind and SQLSTATE only: a server's message may quote values.
            code = getattr(exc, "sqlstate", None)
            raise StoreUnavailable(
                f"postgresql {host_of(self.dsn)}: {type(exc).__name__}"
                + (f" ({code})" if code else "")
            ) from exc
