"""Every file of a SQLite spool seen as one, for the admin commands (``dlq``, ``status``).

Under ``serve --workers N`` dead letters and queues are spread over ``spool.db``,
``spool-1.db``, … (spool/shards.py). ``dlq list`` must show them all and ``dlq replay --id``
must find an entry wherever it is: dead-letter ids are unique across the files (file ``k``
numbers its own above ``k * DEAD_LETTER_ID_STRIDE``), so an id names its file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..config import SpoolConfig
from .base import DeadLetter
from .factory import create_spool
from .shards import DEAD_LETTER_ID_STRIDE, shard_files
from .sqlite import SqliteSpool


def admin_spool(config: SpoolConfig) -> Any:
    """The spool an admin command opens: the one file or stream, or a :class:`ShardSet`."""
    if config.type == "sqlite":
        files = shard_files(config.path)
        if set(files) - {0}:
            return ShardSet(
                [
                    SqliteSpool(path, dead_letter_id_base=k * DEAD_LETTER_ID_STRIDE,
                                reserve=config.reserve)
                    for k, path in files.items()
                ]
            )
    return create_spool(config)


class ShardSet:
    """The dead-letter queue and queue depths of several spool files, as of one spool."""

    def __init__(self, files: Sequence[SqliteSpool]) -> None:
        self.files = list(files)

    async def open(self, backends: Sequence[str]) -> None:
        for spool in self.files:
            await spool.open(backends)

    async def close(self) -> None:
        for spool in self.files:
            await spool.close()

    async def dead_letters(
        self, backend: str, limit: int = 100, since: str | None = None
    ) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of ``backend`` over all files."""
        letters = [
            letter
            for spool in self.files
            for letter in await spool.dead_letters(backend, limit, since)
        ]
        return sorted(letters, key=lambda d: (d.failed_at, d.id))[:limit]

    async def dead_letter_counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for spool in self.files:
            total.update(await spool.dead_letter_counts())
        return dict(total)

    async def queues(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for spool in self.files:
            total.update(await spool.queues())
        return dict(total)

    async def replay(
        self, backend: str, ids: Sequence[int] | None = None, since: str | None = None
    ) -> int:
        """Re-enqueue dead letters of ``backend``, each in the file it came from."""
        moved = 0
        for spool, own in self._select(ids):
            moved += await spool.replay(backend, own, since)
        return moved

    async def purge(
        self,
        backend: str,
        ids: Sequence[int] | None = None,
        since: str | None = None,
        *,
        release_queue: bool = False,
    ) -> int:
        purged = 0
        for spool, own in self._select(ids):
            purged += await spool.purge(backend, own, since, release_queue=release_queue)
        return purged

    def _select(self, ids: Sequence[int] | None) -> list[tuple[SqliteSpool, list[int] | None]]:
        """Each file with the ids that live in it; a file none of ``ids`` names is skipped
        (an empty id list would mean "all" to the file)."""
        if not ids:
            return [(spool, None) for spool in self.files]
        chosen: list[tuple[SqliteSpool, list[int] | None]] = []
        for spool in self.files:
            own = [
                i
                for i in ids
                if i // DEAD_LETTER_ID_STRIDE == spool.dead_letter_id_base // DEAD_LETTER_ID_STRIDE
            ]
            if own:
                chosen.append((spool, own))
        return chosen
