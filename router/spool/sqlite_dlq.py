"""``beacon-router dlq …`` on the SQLite spool: a backend's dead letters listed, replayed for
it alone, or purged."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .base import DeadLetter
from .one_thread import OneThread


class SqliteDeadLetterCommands:
    """The dead-letter half of :class:`~router.spool.sqlite.SqliteSpool`."""

    dead_letter_id_base: int
    _reads: OneThread

    async def _call(self, fn: Any, notify: bool = False) -> Any:
        raise NotImplementedError  # the writer thread runs ``fn`` (sqlite.py)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # a read on the reader thread (sqlite.py)

    async def dead_letters(self, backend: str, limit: int = 100, since: str | None = None
                           ) -> list[DeadLetter]:
        """Dead letters of ``backend``, oldest first; ``since`` is an ISO time lower bound."""
        rows = await self._reads.run(
            self._query,
            "SELECT id, backend, body, reason, attempts, failed_at FROM dead_letters "
            "WHERE backend = ? AND failed_at >= ? ORDER BY id LIMIT ?",
            (backend, since or "", limit))
        return [DeadLetter(*row) for row in rows]

    async def dead_letter_counts(self) -> dict[str, int]:
        rows = await self._reads.run(
            self._query,
            "SELECT backend, count(*) FROM dead_letters GROUP BY backend", ())
        return dict(rows)

    async def replay(self, backend: str, ids: Sequence[int] | None = None,
                     since: str | None = None) -> int:
        """Re-enqueue dead letters for ``backend`` only; returns how many."""
        where, params = _dlq_filter(backend, ids, since)

        def move(conn: sqlite3.Connection) -> int:
            conn.execute(f"INSERT INTO events (body, target) SELECT body, backend "
                         f"FROM dead_letters WHERE {where} ORDER BY id", params)
            return conn.execute(f"DELETE FROM dead_letters WHERE {where}", params).rowcount

        return int(await self._call(move, notify=True))

    async def purge(self, backend: str, ids: Sequence[int] | None = None,
                    since: str | None = None, *, release_queue: bool = False) -> int:
        """Delete dead letters of ``backend``; ``release_queue`` also forgets its cursor, so
        events kept only for a backend no longer configured can be compacted."""
        where, params = _dlq_filter(backend, ids, since)

        def delete(conn: sqlite3.Connection) -> int:
            count = conn.execute(f"DELETE FROM dead_letters WHERE {where}", params).rowcount
            if release_queue:
                conn.execute("DELETE FROM cursors WHERE backend = ?", (backend,))
            return int(count)

        return int(await self._call(delete))

    async def queues(self) -> dict[str, int]:
        """Every backend with a cursor in this spool (configured or not) and its queue depth."""
        rows = await self._reads.run(self._query, "SELECT backend, position FROM cursors", ())
        last = await self._reads.run(
            self._query,
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'", ())
        top = last[0][0] if last else 0
        return {backend: max(0, top - position) for backend, position in rows}



def _dlq_filter(backend: str, ids: Sequence[int] | None, since: str | None
                ) -> tuple[str, tuple[Any, ...]]:
    where = "backend = ?"
    params: list[Any] = [backend]
    if ids:
        where += f" AND id IN ({', '.join('?' * len(ids))})"
        params.extend(int(i) for i in ids)
    if since:
        where += " AND failed_at >= ?"
        params.append(since)
    return where, tuple(params)

