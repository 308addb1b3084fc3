"""``type: store`` — the ops team's own database of beacons: SQLite or PostgreSQL.

One row per event, keyed by its ``uuid`` so a redelivered batch never duplicates rows:

    uuid         text, primary key
    received_at  timestamp, indexed       (SQLite: ISO 8601 UTC text, which sorts by time)
    event        text, indexed            the event name
    source       text                     beacon, posthog, ...
    distinct_id  text, indexed            the value at the ``distinct_id:`` field path
    version      text, indexed            the value at the ``version:`` field path
    data         JSON (PostgreSQL: jsonb) the event's fields as the backend's filters left them
    profile      text                     the source profile that mapped the event (replay)

Rows older than ``retention`` are deleted from ``send``, at most once every few minutes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from ...config import Duration, masked
from ...errors import RetryableError
from ...event import Event, get_path, split_path
from ..base import Backend, Options, Request, SendResult, register
from .rows import Engine, Row
from .sqlite import SqliteStore

log = structlog.get_logger(__name__)

YIELD_EVERY = 200  # rows made between two turns of the event loop's other work (ingest)
PRUNE_EVERY = 300.0  # seconds between retention passes; each one is an indexed range delete
# 48, not PostgreSQL's 63: index names are the table's plus a suffix and must stay distinct.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")


class StoreOptions(Options):
    """Where the rows go, how long they stay, and which fields fill distinct_id and version."""

    url: str = Field(description="sqlite:///relative.db, sqlite:////absolute.db or "
                                 "postgresql://user@host:port/db")
    table: str = Field("beacons", description="letters, digits and _")
    schema_: str | None = Field(None, alias="schema", description="PostgreSQL schema")
    retention: Duration | None = Field(None, gt=0,
                                       description="rows older than this are deleted; none: kept")
    distinct_id: str = Field("installation_id",
                             description="dotted path that fills the distinct_id column")
    version: str = Field("version", description="dotted path that fills the version column")
    password: SecretStr | None = Field(None, description="PostgreSQL: kept out of the URL")
    pool_max: int = Field(4, ge=1, le=64, description="PostgreSQL: connections at most")
    timeout: Duration = Field(10.0, gt=0, description="PostgreSQL: connect and statement timeout")

    @field_validator("url")
    @classmethod
    def _known_url(cls, v: str) -> str:
        parse_url(v)
        return v

    @field_validator("table", "schema_")
    @classmethod
    def _identifier(cls, v: str | None) -> str | None:
        if v is not None and not _IDENTIFIER.match(v):
            raise ValueError("use letters, digits and _ (not starting with a digit), at most 48")
        return v

    @model_validator(mode="after")
    def _postgres_only_keys(self) -> StoreOptions:
        if parse_url(self.url)[0] == "sqlite":
            for key, value in (("schema", self.schema_), ("password", self.password)):
                if value is not None:
                    raise ValueError(f"`{key}:` applies to postgresql:// URLs only")
        return self


def parse_url(url: str) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", dsn)``; ValueError for anything else."""
    if url.startswith("sqlite:///"):
        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path.
        path = url.removeprefix("sqlite:///")
        if not path or path.endswith("/"):
            raise ValueError("sqlite:/// needs a file path, e.g. sqlite:///data/beacons.db")
        return "sqlite", path
    if re.match(r"^postgres(ql)?://", url):
        return "postgresql", url
    raise ValueError("must be sqlite:///path/to/file.db or postgresql://user@host:port/db")


@register
class StoreBackend(Backend):
    """Writes every event as one row, idempotently, into SQLite or PostgreSQL."""

    type = "store"
    Options = StoreOptions
    has_tables = True

    def __init__(self, name: str, options: StoreOptions) -> None:
        super().__init__(name, options)
        self.options: StoreOptions = options
        self.engine = _engine(name, options)
        # Split once: to_row runs for every stored event.
        self._columns = (split_path(options.distinct_id), split_path(options.version))
        self._migrated = False
        self._next_prune = 0.0  # monotonic time; 0 = prune on the first send
        # A row is read off the event's JSON as spooled: no Event made on the way; a body
        # that is no event's JSON is refused by index (row_of_json).
        self.sends_spooled = self.decodes_spooled = True

    @property
    def table(self) -> str:
        """The table as named in SQL: ``schema.table`` on PostgreSQL."""
        if parse_url(self.options.url)[0] == "sqlite":
            return self.options.table
        return f"{self.options.schema_ or 'public'}.{self.options.table}"

    def render(self, batch: Sequence[Event]) -> list[Request]:
        rows, dead = self.rows(batch)
        body: list[Any] = [row.to_dict() for row in rows.values()]
        body += [{"uuid": batch[i].uuid, "refused": why} for i, why in dead.items()]
        return [Request("INSERT", masked(self.options.url), {"table": self.table}, body)]

    async def migrate(self) -> None:
        """Create the table and indexes (``beacon-router migrate``); RetryableError if it cannot."""
        await self.engine.migrate()
        self._migrated = True

    async def send(self, batch: Sequence[Event]) -> SendResult:
        if not batch:
            return SendResult.delivered()
        rows: dict[int, Row] = {}
        dead: dict[int, str] = {}
        for start in range(0, len(batch), YIELD_EVERY):  # ingest waits on the same loop
            if start:
                await asyncio.sleep(0)
            part_rows, part_dead = self.rows(batch[start:start + YIELD_EVERY], start)
            rows.update(part_rows)
            dead.update(part_dead)
        return await self._store(rows, dead, len(batch))

    async def send_spooled(self, bodies: Sequence[bytes]) -> SendResult:
        """``send`` for events as the spool holds them: each row is read off the event's
        JSON (one ``orjson.loads``), the same row ``send`` makes of the decoded event."""
        if not bodies:
            return SendResult.delivered()
        rows: dict[int, Row] = {}
        dead: dict[int, str] = {}
        distinct_id, version = self._columns
        for start in range(0, len(bodies), YIELD_EVERY):
            if start:
                await asyncio.sleep(0)
            for i in range(start, min(start + YIELD_EVERY, len(bodies))):
                try:
                    rows[i] = row_of_json(bodies[i], distinct_id, version)
                except ValueError as exc:
                    dead[i] = str(exc)
        return await self._store(rows, dead, len(bodies))

    async def _store(self, rows: dict[int, Row], dead: dict[int, str], n: int) -> SendResult:
        """Insert ``rows`` (by batch index; ``dead`` the indexes refused already) of a batch
        of ``n``."""
        indexes = list(rows)
        try:
            if not self._migrated:
                await self.migrate()
            refused = await self.engine.insert([rows[i] for i in indexes]) if rows else {}
        except RetryableError as exc:
            # Migrate again before the retry: cheap (IF NOT EXISTS), and it heals a dropped table.
            self._migrated = False
            return SendResult.retry_all(n, exc.reason)
        dead.update({indexes[j]: why for j, why in refused.items()})
        await self._prune_if_due()
        if not dead:
            return SendResult.delivered()
        first = next(iter(dead.values()))
        return SendResult(dead=dead, reason=f"{len(dead)} of {n} refused: {first}")

    async def prune(self) -> int:
        """Delete rows older than ``retention`` now; 0 if no retention is set."""
        if self.options.retention is None:
            return 0
        cutoff = datetime.now(UTC) - timedelta(seconds=self.options.retention)
        deleted = await self.engine.prune(cutoff)
        if deleted:
            log.info("store retention pass", backend=self.name, deleted=deleted)
        return deleted

    async def _prune_if_due(self) -> None:
        if self.options.retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        try:
            await self.prune()
        except RetryableError as exc:
            # The batch is stored; a failed clean-up must not make the worker send it again.
            log.warning("store retention pass failed", backend=self.name, reason=exc.reason)

    def rows(self, batch: Sequence[Event], first: int = 0
             ) -> tuple[dict[int, Row], dict[int, str]]:
        """Rows by batch index (counted from ``first``), and the events that cannot become a
        row, with why."""
        rows: dict[int, Row] = {}
        dead: dict[int, str] = {}
        for i, event in enumerate(batch, first):
            try:
                rows[i] = to_row(event, *self._columns)
            except ValueError as exc:
                dead[i] = str(exc)
        return rows, dead

    async def aclose(self) -> None:
        await self.engine.aclose()


def to_row(event: Event, distinct_id_path: str | tuple[str, ...],
           version_path: str | tuple[str, ...]) -> Row:
    """The row for an event; ValueError (with a reason free of event data) if it has none."""
    return _row(event.uuid, event.received_at, event.name, event.source, event.data,
                event.profile, distinct_id_path, version_path)


def row_of_json(body: bytes, distinct_id_path: str | tuple[str, ...],
                version_path: str | tuple[str, ...]) -> Row:
    """``to_row(Event.from_json(body), ...)`` without the Event; ValueError as there, or if
    ``body`` is no event's JSON."""
    try:
        d = orjson.loads(body)
        return _row(d["uuid"], d["received_at"], d["event"], d.get("source", "beacon"),
                    d["data"], d.get("profile"), distinct_id_path, version_path)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"undecodable spool entry: {type(exc).__name__}") from None


def _row(uuid: str, received: str, name: str, source: str, data: Any, profile: str | None,
         distinct_id_path: str | tuple[str, ...], version_path: str | tuple[str, ...]) -> Row:
    try:
        received_at = datetime.fromisoformat(received)
        if received_at.tzinfo is not UTC:  # (a Z parses to UTC itself: nothing to convert)
            received_at = parse_timestamp(received)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("received_at is not an ISO 8601 timestamp") from None
    try:
        text = orjson.dumps(data).decode()
    except TypeError:  # orjson.JSONEncodeError, e.g. an integer beyond 64 bits
        raise ValueError("data cannot be encoded as JSON") from None
    distinct_id, version = _at(data, distinct_id_path), _at(data, version_path)
    # Positional: the fields' order (keywords cost ~1,000 instructions a row more).
    # received_at_iso: the router's own spelling (``now_iso``), as SQLite stores it; no need
    # to format the datetime back into it (iso_z, ~6,000 instructions a row).
    return Row(uuid, received_at, name, source,
               distinct_id if distinct_id is None or type(distinct_id) is str
               else as_text(distinct_id),
               version if version is None or type(version) is str else as_text(version),
               text, profile, received if _canonical(received) else None)


def _at(data: Any, path: str | tuple[str, ...]) -> Any:
    """``get_path(data, path)``, a top-level key of a dict looked up at once."""
    if type(data) is dict and type(path) is tuple and len(path) == 1:
        return data.get(path[0])
    return get_path(data, path)


def _canonical(text: str) -> bool:
    """Whether ``text``, which ``parse_timestamp`` took, is ``iso_z`` of what it parsed to:
    ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (a week date or another offset is not)."""
    return (len(text) == 24 and text[23] == "Z" and text[19] == "." and text[16] == ":"
            and text[13] == ":" and text[10] == "T" and text[7] == "-" and text[4] == "-")


def parse_timestamp(value: str) -> datetime:
    """An aware UTC datetime from ISO 8601; a timestamp without offset is taken as UTC."""
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def as_text(value: Any) -> str | None:
    """A one-key column's value: strings as they are, anything else as JSON, absent as NULL."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _engine(name: str, options: StoreOptions) -> Engine:
    kind, target = parse_url(options.url)
    if kind == "sqlite":
        return SqliteStore(Path(target), options.table, name=name)
    from .postgres import PostgresStore  # the optional postgres extra (checked at config load)

    password = options.password.get_secret_value() if options.password else None
    return PostgresStore(
        target,
        name=name,
        schema=options.schema_ or "public",
        table=options.table,
        password=password or None,
        pool_max=options.pool_max,
        timeout=options.timeout,
    )
