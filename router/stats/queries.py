"""The SQL that reads the store's table back for statistics (PostgreSQL's: :mod:`.postgres`).

Statistics need one thing from the table: for a range of days, every row's day, ``distinct_id``
(the hashed installation id) and the values of the configured dimensions, in ``received_at``
order. That is one range scan on the ``received_at`` index per call (``tests/stats`` checks the
plans); the counting happens in :mod:`router.stats.days`, where each day is read once and kept.

Counting distinct installations in SQL instead (``count(DISTINCT distinct_id) GROUP BY day``)
was measured at 1.1 s per query for 90 days of 1M stored beacons on SQLite, and a report needs
five of them: the temporary B-trees over 64-character hashes, not the scan, cost the time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import StoreUnavailable

Value = str | None
ONE_DAY = timedelta(days=1)
DayRow = tuple[str, str, tuple[Value, ...]]
"""``("2025-06-30", distinct_id, (value of each dimension, ...))``."""



class StoreReader(Protocol):
    """What the statistics read from a store, whichever database holds it."""

    async def span(self) -> tuple[date, date] | None:
        """The first and last day that have rows, or None while the table is empty or absent."""

    async def day_counts(self, start: date, stop: date) -> dict[date, int]:
        """How many rows each day ``start`` ≤ day < ``stop`` holds (days without rows absent).

        Cheap (the index alone answers it), so the cache can re-read only the days that changed.
        """

    async def rows(self, start: date, stop: date) -> list[DayRow]:
        """Every row of the days ``start`` ≤ day < ``stop``, oldest first."""

    async def plan(self, start: date, stop: date) -> str:
        """The database's plan for :meth:`rows`, as text (tests check it uses the index)."""

    async def aclose(self) -> None: ...


def day_start(day: date) -> datetime:
    """Midnight UTC opening ``day``."""
    return datetime.combine(day, time(), UTC)


# -- SQLite --------------------------------------------------------------------------------------


def sqlite_json_path(dimension: str) -> str:
    """``platform.os`` → ``$."platform"."os"`` (quoted, so ``-`` in a key is fine)."""
    return "$" + "".join(f'."{key}"' for key in dimension.split("."))


def sqlite_rows_sql(
    table: str, dimensions: Sequence[str], event: str | None
) -> tuple[str, list[str]]:
    """The rows query and its leading parameters (JSON paths, event), before the day bounds.

    Columns: day, distinct_id, the ``version`` column, and one JSON array holding every other
    dimension's value. ``json_extract`` with several paths parses the document once (30% less
    time than one call per path) and keeps JSON's types (``true`` stays true, not 1); with a
    single path it would return a bare SQL value, so a lone path is asked for twice.
    """
    paths = [sqlite_json_path(d) for d in dimensions if d != "version"]
    if len(paths) == 1:
        paths *= 2
    packed = f"json_extract(data{', ?' * len(paths)})" if paths else "NULL"
    # `+event`: the unary plus keeps SQLite from picking the event index (an equality, which its
    # planner prefers without ANALYZE) over the received_at range, which is far narrower.
    event_term, params = ("", paths) if event is None else (" AND +event = ?", [*paths, event])
    sql = (
        f"SELECT substr(received_at, 1, 10), distinct_id, version, {packed} "
        f'FROM "{table}" WHERE distinct_id IS NOT NULL{event_term} '
        "AND received_at >= ? AND received_at < ? ORDER BY received_at"
    )
    return sql, params


def sqlite_span_sql(table: str) -> str:
    """The oldest and newest ``received_at``.

    Two subqueries: SQLite answers a lone min() or max() from the index's ends, but both in
    one SELECT scan the whole index (330 ms for 1M rows instead of 0.1 ms).
    """
    return (
        f'SELECT (SELECT min(received_at) FROM "{table}"), (SELECT max(received_at) FROM "{table}")'
    )


def sqlite_count_sql(table: str) -> str:
    """The rows of one day, counted from the index alone."""
    return f'SELECT count(*) FROM "{table}" WHERE received_at >= ? AND received_at < ?'


def sqlite_unpack(dimensions: Sequence[str]) -> Callable[[tuple[Any, ...]], DayRow]:
    """Turns a row of :func:`sqlite_rows_sql` into a :data:`DayRow` in ``dimensions`` order."""
    where = []  # per dimension: -1 for the version column, else its index in the JSON array
    json_index = 0
    for d in dimensions:
        where.append(-1 if d == "version" else json_index)
        json_index += d != "version"

    # Most rows repeat a few value combinations: decode each combination once.
    decoded: dict[tuple[Any, Any], tuple[Value, ...]] = {}

    def unpack(row: tuple[Any, ...]) -> DayRow:
        day, distinct_id, version, packed = row
        values = decoded.get((version, packed))
        if values is None:
            if len(decoded) > 100_000:  # a dimension with unbounded values: bound the memo
                decoded.clear()
            found = orjson.loads(packed) if packed is not None else ()
            values = decoded[version, packed] = tuple(
                version if i < 0 else _text(found[i]) for i in where
            )
        return day, distinct_id, values

    return unpack


class SqliteReader:
    """Reads the store's SQLite file through its own read-only connection, on its own thread.

    WAL mode lets it read while the store backend writes; it never takes the write lock.
    """

    def __init__(
        self, path: Path, table: str, dimensions: Sequence[str], event: str | None
    ) -> None:
        self.path, self.table = path, table
        self.sql, self.params = sqlite_rows_sql(table, dimensions, event)
        self._unpack = sqlite_unpack(dimensions)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="stats-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def span(self) -> tuple[date, date] | None:
        row = await self._run(self._fetchone, sqlite_span_sql(self.table), ())
        if row is None or row[0] is None:
            return None
        return date.fromisoformat(row[0][:10]), date.fromisoformat(row[1][:10])

    async def day_counts(self, start: date, stop: date) -> dict[date, int]:
        return await self._run(self._day_counts, start, stop) or {}

    async def rows(self, start: date, stop: date) -> list[DayRow]:
        rows = await self._run(self._fetchall, self.sql, self._bounds(start, stop))
        return [self._unpack(r) for r in rows or ()]

    async def plan(self, start: date, stop: date) -> str:
        rows = await self._run(
            self._fetchall, "EXPLAIN QUERY PLAN " + self.sql, self._bounds(start, stop)
        )
        return "\n".join(str(r[3]) for r in rows)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _bounds(self, start: date, stop: date) -> list[str]:
        # received_at is fixed-width ISO 8601 text, so a day's rows sort between these two.
        return [*self.params, start.isoformat(), stop.isoformat()]

    async def _run(self, fn: Any, *args: object) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # nothing stored yet
                return None
            raise StoreUnavailable(f"sqlite {self.path.name}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path.name}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.path.exists():  # the store creates it with its first batch
                return None
            # mode=ro: statistics must never create the file or write to it.
            self._conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            self._conn.execute("PRAGMA busy_timeout=5000")
        return self._conn

    def _fetchone(self, sql: str, params: Sequence[object]) -> Any:
        conn = self._connect()
        return None if conn is None else conn.execute(sql, params).fetchone()

    def _fetchall(self, sql: str, params: Sequence[object]) -> list[Any]:
        conn = self._connect()
        return [] if conn is None else conn.execute(sql, params).fetchall()

    def _day_counts(self, start: date, stop: date) -> dict[date, int]:
        # One count per day: each is an index-only range count, 0.3 ms for 3000 rows, where a
        # single GROUP BY substr(received_at, 1, 10) sorts the whole index (0.8 s for 1M rows).
        conn, counts = self._connect(), {}
        if conn is None:
            return {}
        sql = sqlite_count_sql(self.table)
        for i in range((stop - start).days):
            day = start + timedelta(days=i)
            (n,) = conn.execute(sql, (day.isoformat(), (day + ONE_DAY).isoformat())).fetchone()
            if n:
                counts[day] = n
        return counts

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _text(value: object) -> Value:
    """A JSON value as PostgreSQL's ``#>>`` writes it: strings bare, the rest as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
