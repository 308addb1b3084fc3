"""The store in PostgreSQL through an asyncpg pool.

A batch is one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (uuid) DO NOTHING``: one round
trip whatever the batch size. If PostgreSQL refuses the data (SQLSTATE class 22 or 23, e.g. a NUL
character jsonb cannot hold), rows are retried one by one so only the bad ones are dead-lettered.
Anything else — refused or lost connections, timeouts, a failover's read-only replica — is
transient: the batch is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from ...errors import RetryableError
from ..http import host_of
from .rows import Row

# Every failure the driver reports; `_bad_data` tells the rows' fault from the rest.
# InternalClientError: what asyncpg raises when the server kills a connection just as a query
# starts on it (seen with pg_terminate_backend), so it is a lost connection like the others.
_DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresError,
)


class PostgresStore:
    """A small pool (min 1) opened on first use and reopened after the server was unreachable."""

    def __init__(
        self,
        dsn: str,
        *,
        name: str,
        schema: str,
        table: str,
        password: str | None,
        pool_max: int,
        timeout: float,
    ) -> None:
        self.dsn, self.schema, self.table = dsn, schema, table
        self.qualified = f'"{schema}"."{table}"'
        self._password, self._pool_max, self._timeout = password, pool_max, timeout
        self._pool: asyncpg.Pool | None = None
        self._where = host_of(dsn)
        # Shows which backend holds a connection in pg_stat_activity.
        self._application_name = f"beacon-router/{name}"[:63]

    async def migrate(self) -> None:
        pool = await self._get_pool()
        t, s = self.table, self.schema
        try:
            async with pool.acquire() as conn, conn.transaction():
                # Several routers may start at once: CREATE ... IF NOT EXISTS races on catalogs.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"beacon-router:{s}.{t}"
                )
                # The indexes as SQLite's (store/sqlite.py, _migrate: why not event, version).
                # CREATE SCHEMA needs CREATE on the database even when the schema exists.
                if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", s):
                    await conn.execute(f'CREATE SCHEMA "{s}"')
                await conn.execute(f"""
                    CREATE TABLE IF NOT EXISTS {self.qualified} (
                        uuid text PRIMARY KEY,
                        received_at timestamptz NOT NULL,
                        event text NOT NULL,
                        source text NOT NULL,
                        distinct_id text,
                        version text,
                        data jsonb NOT NULL,
                        profile text
                    );
                    ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS profile text;
                    CREATE INDEX IF NOT EXISTS "{t}_received_at" ON {self.qualified} (received_at);
                    CREATE INDEX IF NOT EXISTS "{t}_distinct_id" ON {self.qualified} (distinct_id);
                """)
        except _DB_ERRORS as exc:
            raise self._retryable("cannot create the table", exc) from exc

    async def insert(self, rows: Sequence[Row]) -> dict[int, str]:
        try:
            await self._insert(rows)
            return {}
        except _DB_ERRORS as exc:
            if not _bad_data(exc):
                raise self._retryable("insert failed", exc) from exc
        refused: dict[int, str] = {}
        for i, row in enumerate(rows):
            try:
                await self._insert([row])
            except _DB_ERRORS as exc:
                if not _bad_data(exc):
                    raise self._retryable("insert failed", exc) from exc
                refused[i] = f"postgresql refused the row: {_describe(exc)}"
        return refused

    async def prune(self, cutoff: datetime) -> int:
        pool = await self._get_pool()
        try:
            status = await pool.execute(
                f"DELETE FROM {self.qualified} WHERE received_at < $1", cutoff
            )
        except _DB_ERRORS as exc:
            raise self._retryable("retention delete failed", exc) from exc
        return int(status.rpartition(" ")[2] or 0)  # "DELETE 42"

    async def read_page(self, after: tuple[datetime, str], limit: int, since: datetime,
                        until: datetime) -> list[tuple[str, datetime, str, str, str, str | None]]:
        """Up to ``limit`` rows (uuid, received_at, event, source, data, profile) after the
        (received_at, uuid) key ``after``, received in [since, until), in that key's order
        (``replay``)."""
        pool = await self._get_pool()
        try:
            rows = await pool.fetch(
                "SELECT uuid, received_at, event, source, data::text, profile "
                f"FROM {self.qualified} "
                "WHERE (received_at, uuid) > ($1, $2) AND received_at >= $3 "
                "AND received_at < $4 ORDER BY received_at, uuid LIMIT $5",
                *after, since, until, limit)
        except _DB_ERRORS as exc:
            raise self._retryable("read failed", exc) from exc
        return [tuple(r) for r in rows]

    async def count(self, since: datetime, until: datetime) -> int:
        """Rows received in [since, until)."""
        pool = await self._get_pool()
        try:
            return int(await pool.fetchval(
                f"SELECT count(*) FROM {self.qualified} WHERE received_at >= $1 "
                "AND received_at < $2", since, until))
        except _DB_ERRORS as exc:
            raise self._retryable("count failed", exc) from exc

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _insert(self, rows: Sequence[Row]) -> None:
        pool = await self._get_pool()
        await pool.execute(
            f"INSERT INTO {self.qualified} "
            "(uuid, received_at, event, source, distinct_id, version, data, profile) "
            "SELECT u, r, e, s, d, v, j::jsonb, p FROM unnest("
            "$1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], "
            "$7::text[], $8::text[]) AS t(u, r, e, s, d, v, j, p) "
            "ON CONFLICT (uuid) DO NOTHING",
            [r.uuid for r in rows],
            [r.received_at for r in rows],
            [r.event for r in rows],
            [r.source for r in rows],
            [r.distinct_id for r in rows],
            [r.version for r in rows],
            [r.data for r in rows],
            [r.profile for r in rows],
        )

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = asyncpg.create_pool(
                self.dsn,
                password=self._password,
                min_size=1,
                max_size=self._pool_max,
                timeout=self._timeout,
                command_timeout=self._timeout,
                server_settings={"application_name": self._application_name},
            )
            try:
                await pool
            except _DB_ERRORS as exc:
                pool.terminate()
                raise self._retryable("cannot connect", exc) from exc
            self._pool = pool
        return self._pool

    def _retryable(self, what: str, exc: BaseException) -> RetryableError:
        return RetryableError(f"postgresql {self._where}: {what}: {_describe(exc)}")


def _bad_data(exc: BaseException) -> bool:
    """Whether PostgreSQL (or asyncpg, encoding an argument) refused the values themselves."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in ("22", "23")
    # asyncpg's client-side DataError (an argument it cannot encode) is not exported publicly.
    return isinstance(exc, asyncpg.exceptions._base.DataError)


def _describe(exc: BaseException) -> str:
    """The error's kind and SQLSTATE, not its message: messages may quote the rejected values."""
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate:
        return f"{type(exc).__name__} ({exc.sqlstate})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, asyncpg.InternalClientError | asyncpg.InterfaceError):
        return f"connection lost ({type(exc).__name__})"
    return type(exc).__name__
