"""The store backend on a real SQLite file and on the real PostgreSQL (one schema per test)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from router.backends.store import StoreBackend, StoreOptions
from router.backends.store.archive import Archive, Position
from router.config.loader import loads
from router.errors import ConfigError
from router.event import iso_z as iso_utc


def days_ago(days: float) -> str:
    return iso_utc(datetime.now(UTC) - timedelta(days=days))


@dataclass
class Store:
    """One database under test, and how to read it back independently of the backend."""

    kind: str
    url: str
    schema: str | None = None
    made: list[StoreBackend] = field(default_factory=list)

    def backend(self, name: str = "archive", **options: Any) -> StoreBackend:
        options.setdefault("url", self.url)
        if self.schema is not None:
            options.setdefault("schema", self.schema)
        backend = StoreBackend(name, StoreOptions.model_validate(options))
        self.made.append(backend)
        return backend

    async def rows(self, table: str = "beacons") -> list[dict[str, Any]]:
        """Every row, received_at as ISO text and data decoded, ordered by distinct_id."""
        columns = "uuid, received_at, event, source, distinct_id, version"
        if self.kind == "sqlite":
            with sqlite3.connect(self._path) as conn:
                conn.row_factory = sqlite3.Row
                found = conn.execute(f"SELECT {columns}, data FROM {table}").fetchall()
            rows = [dict(r) for r in found]
        else:
            conn = await asyncpg.connect(self.url)
            try:
                found = await conn.fetch(
                    f'SELECT {columns}, data::text AS data FROM "{self.schema}"."{table}"'
                )
            finally:
                await conn.close()
            rows = [{**dict(r), "received_at": iso_utc(r["received_at"])} for r in found]
        for row in rows:
            row["data"] = json.loads(row["data"])
        return sorted(rows, key=lambda r: r["distinct_id"] or "")

    async def execute(self, sql: str, table: str = "beacons") -> None:
        """Run ``sql`` with ``{table}`` naming ``table``, from outside the backend."""
        if self.kind == "sqlite":
            with sqlite3.connect(self._path) as conn:
                conn.execute(sql.format(table=f'"{table}"'))
            return
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql.format(table=f'"{self.schema}"."{table}"'))
        finally:
            await conn.close()

    async def indexed_columns(self, table: str = "beacons") -> set[str]:
        if self.kind == "sqlite":
            with sqlite3.connect(self._path) as conn:
                names = [r[1] for r in conn.execute(f"PRAGMA index_list({table})")]
                return {r[2] for n in names for r in conn.execute(f"PRAGMA index_info({n})")}
        conn = await asyncpg.connect(self.url)
        try:
            found = await conn.fetch(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = $1::regclass",
                f'"{self.schema}"."{table}"',
            )
        finally:
            await conn.close()
        return {r["attname"] for r in found}

    @property
    def _path(self) -> str:
        return self.url.removeprefix("sqlite:///")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        under_test = Store("sqlite", f"sqlite:///{tmp_path}/db/beacons.db")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        under_test = Store("postgresql", dsn, request.getfixturevalue("postgres_schema"))
    yield under_test
    for backend in under_test.made:
        await backend.aclose()


@pytest.fixture
async def postgres(postgres_dsn, postgres_schema) -> AsyncIterator[Store]:
    under_test = Store("postgresql", postgres_dsn, postgres_schema)
    yield under_test
    for backend in under_test.made:
        await backend.aclose()


async def test_rows_land_with_the_columns_filled(store, make_events):
    batch = make_events(3)

    result = await store.backend().send(batch)

    assert result.ok
    rows = await store.rows()
    assert rows == [
        {
            "uuid": event.uuid,
            "received_at": event.received_at,
            "event": "beacon",
            "source": "beacon",
            "distinct_id": f"inst-{i}",
            "version": f"2.{i}.0",
            "data": event.data,
        }
        for i, event in enumerate(batch)
    ]


async def test_a_redelivered_batch_adds_no_rows(store, make_events):
    batch = make_events(3)
    backend = store.backend()

    assert (await backend.send(batch)).ok
    assert (await backend.send(batch)).ok
    assert (await backend.send([*batch[1:], *make_events(1), batch[0]])).ok

    rows = await store.rows()
    assert len(rows) == 4
    assert {r["uuid"] for r in rows} >= {e.uuid for e in batch}


async def test_retention_deletes_only_rows_older_than_it(store, make_events):
    old, recent = (
        make_events(1, received_at=days_ago(401)),
        make_events(1, received_at=days_ago(399)),
    )
    assert (await store.backend().send([*old, *recent])).ok  # no retention: both kept
    assert len(await store.rows()) == 2

    newest = make_events(1)
    assert (await store.backend(retention="400d").send(newest)).ok

    assert sorted(r["uuid"] for r in await store.rows()) == sorted([recent[0].uuid, newest[0].uuid])


async def test_retention_runs_at_most_once_per_interval_from_send(store, make_events):
    backend = store.backend(retention="30d")
    assert (await backend.send(make_events(1))).ok  # the first send runs a retention pass
    old = make_events(1, received_at=days_ago(31))

    assert (await backend.send(old)).ok  # the next pass is minutes away: the old row stays
    assert old[0].uuid in {r["uuid"] for r in await store.rows()}

    assert await backend.prune() == 1
    assert old[0].uuid not in {r["uuid"] for r in await store.rows()}


async def test_migrate_creates_the_table_and_indexes_before_any_send(store):
    await store.backend(table="beacons_v2").migrate()

    assert await store.rows("beacons_v2") == []
    # uuid's primary key, the ranges the router reads, one installation's rows; not the
    # low-cardinality event and version (each cost every insert, no query uses them).
    assert await store.indexed_columns("beacons_v2") == {"uuid", "received_at", "distinct_id"}


async def test_an_archive_with_the_former_event_and_version_indexes_keeps_them(store, make_events):
    await store.backend(table="older").migrate()
    for column in ("event", "version"):
        await store.execute(f'CREATE INDEX "older_{column}" ON {{table}} ({column})',
                            table="older")
    backend = store.backend(table="older")
    assert (await backend.send(make_events(3))).ok

    assert len(await store.rows("older")) == 3
    assert {"event", "version"} <= await store.indexed_columns("older")


async def test_field_paths_choose_distinct_id_and_version(store, make_events):
    batch = make_events(2, installation={"id": "abc"}, app={"build": 42})
    del batch[1].data["installation"]

    backend = store.backend(distinct_id="installation.id", version="app.build")
    assert (await backend.send(batch)).ok

    rows = await store.rows()
    assert [(r["distinct_id"], r["version"]) for r in rows] == [(None, "42"), ("abc", "42")]


async def test_an_event_without_a_valid_timestamp_is_dead_and_the_rest_stored(store, make_events):
    batch = make_events(3)
    batch[1].received_at = "yesterday-ish"

    result = await store.backend().send(batch)

    assert list(result.dead) == [1]
    assert not result.retry
    assert "received_at" in result.dead[1]
    assert {r["uuid"] for r in await store.rows()} == {batch[0].uuid, batch[2].uuid}


async def test_a_table_dropped_under_the_router_is_recreated_on_retry(store, make_events):
    backend = store.backend()
    assert (await backend.send(make_events(1))).ok
    await store.execute("DROP TABLE {table}")
    batch = make_events(2)

    first = await backend.send(batch)
    second = await backend.send(batch)

    assert first.retry == (0, 1)
    assert second.ok
    assert {r["uuid"] for r in await store.rows()} == {e.uuid for e in batch}


async def test_render_shows_the_rows_and_masks_the_password(tmp_path, make_events):
    batch = make_events(1)
    backend = StoreBackend(
        "archive", StoreOptions(url="postgresql://ops:hunter2@db.internal:5432/beacons")
    )

    [request] = backend.render(batch)

    assert "hunter2" not in request.url
    assert request.headers == {"table": "public.beacons"}
    assert request.body[0]["uuid"] == batch[0].uuid
    assert request.body[0]["distinct_id"] == "inst-0"
    assert request.body[0]["data"] == batch[0].data


# --- SQLite specifics -------------------------------------------------------------------------


async def test_sqlite_urls_follow_sqlalchemy_and_create_parent_dirs(
    tmp_path, monkeypatch, make_events
):
    monkeypatch.chdir(tmp_path)
    relative = StoreBackend("a", StoreOptions(url="sqlite:///data/rel/beacons.db"))
    absolute = StoreBackend("b", StoreOptions(url=f"sqlite:///{tmp_path}/abs/beacons.db"))
    try:
        for backend in (relative, absolute):
            assert (await backend.send(make_events(1))).ok
    finally:
        await relative.aclose()
        await absolute.aclose()

    assert (tmp_path / "data/rel/beacons.db").is_file()
    assert (tmp_path / "abs/beacons.db").is_file()
    assert str(tmp_path).startswith("/")  # so the second URL really was sqlite:////abs/...


async def test_sqlite_store_runs_in_wal_mode(tmp_path, make_events):
    backend = StoreBackend("a", StoreOptions(url=f"sqlite:///{tmp_path}/beacons.db"))
    try:
        await backend.send(make_events(1))
    finally:
        await backend.aclose()

    with sqlite3.connect(tmp_path / "beacons.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_unopenable_sqlite_file_is_retried(tmp_path, make_events):
    (tmp_path / "not-a-dir").write_text("a file where a directory should be")
    backend = StoreBackend("a", StoreOptions(url=f"sqlite:///{tmp_path}/not-a-dir/beacons.db"))
    try:
        result = await backend.send(make_events(2))
    finally:
        await backend.aclose()

    assert result.retry == (0, 1)
    assert "beacons.db" in result.reason


# --- PostgreSQL specifics ---------------------------------------------------------------------


@pytest.mark.postgres
async def test_a_row_postgresql_refuses_is_dead_and_the_rest_stored(postgres, make_events):
    batch = make_events(3)
    batch[1].data["note"] = "nul \x00 byte"  # jsonb cannot hold \u0000

    result = await postgres.backend().send(batch)

    assert list(result.dead) == [1]
    assert "UntranslatableCharacterError" in result.dead[1]
    assert "nul" not in result.reason  # the reason never quotes event data
    assert {r["uuid"] for r in await postgres.rows()} == {batch[0].uuid, batch[2].uuid}


@pytest.mark.postgres
async def test_unreachable_postgresql_is_retried_then_the_real_server_takes_the_batch(
    postgres, make_events, closed_port
):
    batch = make_events(2)
    down = postgres.backend(url=f"postgresql://postgres@127.0.0.1:{closed_port}/test")

    result = await down.send(batch)

    assert result.retry == (0, 1)
    assert f"127.0.0.1:{closed_port}" in result.reason
    real = postgres.url.replace("postgresql://", "postgres://", 1)  # both schemes are accepted
    assert (await postgres.backend(url=real).send(batch)).ok
    assert len(await postgres.rows()) == 2


@pytest.mark.postgres
async def test_lost_connections_are_retried_and_the_pool_recovers(
    postgres, postgres_dsn, make_events
):
    backend = postgres.backend(name=postgres.schema)  # its connections are easy to find
    first, second = make_events(2), make_events(2)
    assert (await backend.send(first)).ok

    admin = await asyncpg.connect(postgres_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            f"beacon-router/{postgres.schema}",
        )
    finally:
        await admin.close()
    assert killed >= 1

    results = [await backend.send(second) for _ in range(3)]

    assert results[-1].ok
    assert all(r.ok or r.retry == (0, 1) for r in results)  # never dead, never raised
    assert len(await postgres.rows()) == 4


@pytest.mark.postgres
async def test_routers_migrating_at_once_all_succeed(postgres):
    backends = [postgres.backend() for _ in range(4)]

    await asyncio.gather(*(b.migrate() for b in backends))

    assert await postgres.rows() == []


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "mysql://db/beacons"}, "sqlite:///"),
        ({"url": "sqlite://relative.db"}, "sqlite:///"),
        ({"url": "sqlite:///data/b.db", "schema": "ops"}, "postgresql:// URLs only"),
        ({"url": "postgresql://db/b", "table": "beacons; drop table x"}, "letters, digits"),
        ({"url": "postgresql://db/b", "retention": "forever"}, "not a duration"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(options, message):
    text = json.dumps({"backends": {"archive": {"type": "store", **options}}})

    with pytest.raises(ConfigError) as err:
        loads(text)

    assert "backends.archive" in str(err.value)
    assert message in str(err.value)


def test_the_design_docs_example_is_valid():
    config = loads(
        "backends:\n"
        "  archive: {type: store, url: 'sqlite:///data/beacons.db', retention: 400d,\n"
        "            table: beacons, distinct_id: installation_id, version: version}\n"
    )

    options = config.backends["archive"].options
    assert options.retention == 400 * 86400
    assert Path(options.url.removeprefix("sqlite:///")) == Path("data/beacons.db")


async def test_an_archive_made_before_profiles_gains_the_column_and_replays_keep_the_profile(
    store, make_events
):
    # The table as the store created it before source profiles: no `profile` column.
    if store.kind == "sqlite":
        Path(store._path).parent.mkdir(parents=True, exist_ok=True)
        time_type, json_type = "TEXT", "TEXT"
    else:
        await store.execute(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"')
        time_type, json_type = "timestamptz", "jsonb"
    await store.execute(
        f"CREATE TABLE {{table}} (uuid text PRIMARY KEY, received_at {time_type} NOT NULL, "
        "event text NOT NULL, source text NOT NULL, distinct_id text, version text, "
        f"data {json_type} NOT NULL)"
    )
    old, new = make_events(2)
    new.profile = "gitlab"
    backend = store.backend()
    assert (await backend.send([old, new])).ok

    pages = await Archive(backend).page(Position(), 10)

    assert {e.uuid: e.profile for e in pages} == {old.uuid: None, new.uuid: "gitlab"}


async def test_spooled_events_make_the_same_rows_as_decoded_ones(store, make_events, tmp_path):
    """The worker hands the store events as the spool holds them (their JSON): the rows are
    the ones ``send`` makes of the decoded events, whatever the timestamp's spelling."""
    batch = make_events(4)
    batch[1].received_at = "2025-11-28T00:10:11+02:00"  # not iso_z's spelling: formatted
    batch[2].profile = "posthog"
    spooled = store.backend()
    assert spooled.sends_spooled

    assert (await spooled.send_spooled([e.to_json() for e in batch])).ok

    rows = await store.rows()
    decoded = Store(store.kind, f"sqlite:///{tmp_path}/decoded/beacons.db") \
        if store.kind == "sqlite" else None
    if decoded is not None:
        try:
            assert (await decoded.backend().send(batch)).ok
            assert await decoded.rows() == rows
        finally:
            for backend in decoded.made:
                await backend.aclose()
    assert [r["received_at"] for r in rows if r["uuid"] == batch[1].uuid] == [
        "2025-11-27T22:10:11.000Z"]
    assert {r["uuid"] for r in rows} == {e.uuid for e in batch}


async def test_a_spooled_entry_that_is_no_event_is_dead_and_the_rest_stored(store, make_events):
    batch = make_events(2)
    bodies = [batch[0].to_json(), b'{"uuid":"x","event":"no received_at"}', b'{"uuid":"',
              batch[1].to_json()]
    bad_time = make_events(1)[0]
    bad_time.received_at = "2025-13-28T00:10:11.000Z"  # iso_z's shape, but no date
    bodies.append(bad_time.to_json())

    result = await store.backend().send_spooled(bodies)

    assert sorted(result.dead) == [1, 2, 4]
    assert not result.retry
    assert "undecodable" in result.dead[1] and "undecodable" in result.dead[2]
    assert "received_at" in result.dead[4]
    assert {r["uuid"] for r in await store.rows()} == {batch[0].uuid, batch[1].uuid}
