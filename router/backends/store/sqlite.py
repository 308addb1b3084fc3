"""The store in a SQLite file: every blocking call runs on the backend's own single thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from ...errors import RetryableError
from ...event import iso_z
from .rows import Row

T = TypeVar("T")
# sqlite3 binds int, float, str and bytearray as they are, but sends None (a row's absent
# profile, distinct_id or version) through its adaptation protocol, which looks up __adapt__
# and __conform__ and raises and clears an AttributeError: ~3,000 instructions a stored row
# (CPython 3.11; bench/delivery_parts.py store). An adapter registered for None is found at
# once, and an empty dict's get, a C method, gives None back for it. (The spool registers
# one for bytes, spool/sqlite.py.)
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)

PRUNE_CHUNK = 5000  # rows per DELETE, so a big first retention pass never holds the lock long
WAL_AUTOCHECKPOINT_PAGES = 10_000  # SQLite's default is 1,000


class SqliteStore:
    """One connection, owned by one thread: sqlite3 objects must stay on the thread that made them,
    and a single writer is all SQLite allows anyway."""

    def __init__(self, path: Path, table: str, *, name: str) -> None:
        self.path, self.table = path, table
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{name}")
        self._conn: sqlite3.Connection | None = None

    async def migrate(self) -> None:
        await self._run(self._migrate)

    async def insert(self, rows: Sequence[Row]) -> dict[int, str]:
        # SQLite takes any text, so no single row can be refused: failures are the file's.
        await self._run(self._insert, rows)
        return {}

    async def prune(self, cutoff: datetime) -> int:
        return await self._run(self._prune, iso_z(cutoff))

    async def read_page(self, after: tuple[str, str], limit: int, since: str, until: str
                        ) -> list[tuple[str, str, str, str, str, str | None]]:
        """Up to ``limit`` rows (uuid, received_at, event, source, data, profile) after the
        (received_at, uuid) key ``after``, received in [since, until), in that key's order
        (``replay``)."""
        return await self._run(self._read_page, after, limit, since, until)

    async def count(self, since: str, until: str) -> int:
        """Rows received in [since, until)."""
        return await self._run(self._count, since, until)

    async def aclose(self) -> None:
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            # "database is locked", "disk I/O error", "database or disk is full": the file's
            # trouble, not the events'; SQLite's messages name no values.
            raise RetryableError(f"sqlite {self.path.name}: {exc}") from exc
        except OSError as exc:
            raise RetryableError(f"sqlite {self.path.name}: {exc.strerror or exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode never corrupts the file; an OS crash or power loss may drop the
            # last commits. The store is an analytics archive, not the durable copy (the spool
            # is), and an fsync per batch would cap throughput on slow disks.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Ops may read the file while we write (sqlite3 CLI, Datasette): wait, don't fail.
            conn.execute("PRAGMA busy_timeout=5000")
            # Checkpoint every ~40 MB of WAL instead of 4 MB: random uuid and distinct_id keys
            # touch a new index page per row, and each checkpoint copies those pages back into
            # the file; fewer, larger checkpoints cost a quarter less CPU per stored row
            # (bench/README.md, "store").
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._conn = conn
        return self._conn

    def _migrate(self) -> None:
        # Indexed: received_at (statistics, retention, replay: every range the router reads)
        # and distinct_id (one installation's rows, an erasure request). Not event or version:
        # a handful of values each, no query of the router's uses them, and each cost ~5k
        # instructions per stored row (bench/README.md, "store indexes"). Archives made with
        # them keep them.
        t = self.table
        self._connect().executescript(f"""
            CREATE TABLE IF NOT EXISTS "{t}" (
                uuid TEXT PRIMARY KEY,
                received_at TEXT NOT NULL,
                event TEXT NOT NULL,
                source TEXT NOT NULL,
                distinct_id TEXT,
                version TEXT,
                data TEXT NOT NULL,
                profile TEXT
            );
            CREATE INDEX IF NOT EXISTS "{t}_received_at" ON "{t}" (received_at);
            CREATE INDEX IF NOT EXISTS "{t}_distinct_id" ON "{t}" (distinct_id);
        """)
        columns = {row[1] for row in self._connect().execute(f'PRAGMA table_info("{t}")')}
        if "profile" not in columns:  # an archive made before source profiles
            self._connect().execute(f'ALTER TABLE "{t}" ADD COLUMN profile TEXT')

    def _insert(self, rows: Sequence[Row]) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f'INSERT OR IGNORE INTO "{self.table}" '
                "(uuid, received_at, event, source, distinct_id, version, data, profile) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.uuid,
                        r.received_at_iso or iso_z(r.received_at),
                        r.event,
                        r.source,
                        r.distinct_id,
                        r.version,
                        r.data,
                        r.profile,
                    )
                    for r in rows
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _prune(self, cutoff: str) -> int:
        conn, deleted = self._connect(), 0
        while True:
            cursor = conn.execute(
                f'DELETE FROM "{self.table}" WHERE rowid IN (SELECT rowid FROM "{self.table}" '
                "WHERE received_at < ? LIMIT ?)",
                (cutoff, PRUNE_CHUNK),
            )
            deleted += cursor.rowcount
            if cursor.rowcount < PRUNE_CHUNK:
                return deleted

    def _read_page(self, after: tuple[str, str], limit: int, since: str, until: str
                   ) -> list[tuple[str, str, str, str, str, str | None]]:
        self._migrate()  # an archive not yet written to is an empty one, not an error
        return self._connect().execute(
            f'SELECT uuid, received_at, event, source, data, profile FROM "{self.table}" '
            "WHERE (received_at, uuid) > (?, ?) AND received_at >= ? AND received_at < ? "
            "ORDER BY received_at, uuid LIMIT ?", (*after, since, until, limit)).fetchall()

    def _count(self, since: str, until: str) -> int:
        self._migrate()
        row = self._connect().execute(
            f'SELECT count(*) FROM "{self.table}" WHERE received_at >= ? AND received_at < ?',
            (since, until)).fetchone()
        return int(row[0])

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
