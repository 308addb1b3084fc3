"""The store is read by index: the plans of the statistics' queries, on both databases."""

from __future__ import annotations

import sqlite3
from datetime import date

import asyncpg
import pytest
from conftest import Store, beacon

from router.stats.queries import (
    day_start,
    sqlite_count_sql,
    sqlite_json_path,
    sqlite_rows_sql,
    sqlite_span_sql,
)

MARCH, APRIL = date(2025, 3, 1), date(2025, 4, 1)


@pytest.mark.parametrize("event", [None, "beacon"])
async def test_sqlite_rows_query_searches_the_received_at_index_without_sorting(
    sqlite_store: Store, event
):
    await sqlite_store.add([beacon(f"2025-03-{d:02d}", f"i{d}") for d in range(1, 29)])
    stats = sqlite_store.stats(APRIL, f"stats: {{event: {event}}}" if event else "")
    try:
        plan = await stats.reader.plan(MARCH, APRIL)
    finally:
        await stats.aclose()
    assert (
        "SEARCH beacons USING INDEX beacons_received_at (received_at>? AND received_at<?)" in plan
    )
    assert "TEMP B-TREE" not in plan  # ORDER BY received_at comes from the index itself
    assert "SCAN" not in plan


async def test_sqlite_span_and_day_counts_are_answered_from_the_index_alone(
    sqlite_store: Store, tmp_path
):
    await sqlite_store.add([beacon("2025-03-01", "a")])
    with sqlite3.connect(tmp_path / "beacons.db") as conn:
        span = conn.execute("EXPLAIN QUERY PLAN " + sqlite_span_sql("beacons")).fetchall()
        count = conn.execute(
            "EXPLAIN QUERY PLAN " + sqlite_count_sql("beacons"), ("2025-03-01", "2025-03-02")
        ).fetchall()
    index_ends = "SEARCH beacons USING COVERING INDEX beacons_received_at"
    assert [r[3] for r in span].count(index_ends) == 2
    assert [r[3] for r in count] == [f"{index_ends} (received_at>? AND received_at<?)"]


@pytest.mark.postgres
@pytest.mark.parametrize("event", [None, "beacon"])
async def test_postgres_rows_query_can_use_the_received_at_index(postgresql_store: Store, event):
    await postgresql_store.add([beacon(f"2025-03-{d:02d}", f"i{d}") for d in range(1, 29)])
    stats = postgresql_store.stats(APRIL, f"stats: {{event: {event}}}" if event else "")
    reader = stats.reader
    await stats.aclose()
    conn = await asyncpg.connect(postgresql_store.url)
    try:
        await conn.execute(f'ANALYZE "{postgresql_store.schema}"."beacons"')
        # A table this small is cheaper to read whole, so the planner would; forbidding that
        # shows whether the query *can* use the index, which is what a large table needs.
        await conn.execute("SET enable_seqscan = off")
        rows = await conn.fetch(
            "EXPLAIN " + reader.sql,
            *reader.params,  # type: ignore[attr-defined]
            day_start(MARCH),
            day_start(APRIL),
        )
    finally:
        await conn.close()
    plan = "\n".join(r[0] for r in rows)
    assert "Index Scan using beacons_received_at" in plan
    assert "Sort" not in plan  # rows come in received_at order from the index


def test_sqlite_json_paths_quote_every_key():
    assert sqlite_json_path("platform.os") == '$."platform"."os"'
    assert sqlite_json_path("deployment-type") == '$."deployment-type"'


def test_sqlite_rows_query_asks_a_single_json_path_twice_to_keep_json_types():
    sql, params = sqlite_rows_sql("beacons", ["version", "platform.os"], None)
    assert "json_extract(data, ?, ?)" in sql
    assert params == ['$."platform"."os"', '$."platform"."os"']
    sql, params = sqlite_rows_sql("beacons", ["version"], "beacon")
    assert "NULL" in sql and "+event = ?" in sql and params == ["beacon"]
