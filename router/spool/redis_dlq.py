"""Dead letters of the Redis spool: one stream per backend, numbered for ``beacon-router dlq``.

<prefix>:dlq:<backend>       entries: n, event, event_id, reason, attempts, failed_at
<prefix>:dlq-seq:<backend>   the counter behind ``n``, the id ops pass to ``dlq --id N``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ..errors import Unavailable
from ..event import now_iso
from .base import DeadLetter, Entry

RETRY_AFTER_DOWN = 5.0  # what clients are told while Redis is unreachable

# Fields of an entry on the events stream: its body and, for a replay, the one backend it is for.
EVENT_FIELD, TARGET_FIELD = b"event", b"target"
_CHUNK = 1000  # entries per XRANGE
_RETRY_AFTER = 5.0

# Move entries a group gave up on to its dead-letter stream, once each: an entry no longer
# pending (acked, or moved already by another instance) is skipped. XADD comes before XACK so
# that a failed write leaves the entry pending rather than lost.
# KEYS: stream, dlq, dlq-seq. ARGV: group, failed_at, then (id, body, reason, attempts) per entry.
_MOVE_LUA = """
local moved = 0
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 1 then
    local n = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[2], '*', 'n', n, 'event', ARGV[i + 1], 'event_id', id,
               'reason', ARGV[i + 2], 'attempts', ARGV[i + 3], 'failed_at', ARGV[2])
    redis.call('XACK', KEYS[1], ARGV[1], id)
    moved = moved + 1
  end
end
return moved
"""


# A replay's dead letters (router/replay): events that were never on the stream, so there is
# nothing pending to check or ack; kept exactly as _MOVE_LUA keeps them.
_ADD_LUA = """
for i = 2, #ARGV, 4 do
  local n = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], '*', 'n', n, 'event', ARGV[i + 1], 'event_id', ARGV[i],
             'reason', ARGV[i + 2], 'attempts', ARGV[i + 3], 'failed_at', ARGV[1])
end
return 0
"""


class RedisDeadLetters:
    """The dead-letter streams of one spool: the move (atomic with the ack) and the admin side.

    ``move`` lets ``RedisError`` through (the spool decides how to wait); the admin methods turn
    it into ``Unavailable`` for the CLI."""

    def __init__(self, client: Redis, prefix: str, stream: str) -> None:
        self.client, self.prefix, self.stream = client, prefix, stream
        self._move = client.register_script(_MOVE_LUA)
        self._add = client.register_script(_ADD_LUA)

    def key(self, backend: str) -> str:
        return f"{self.prefix}:dlq:{backend}"

    async def move(self, backend: str, items: Sequence[tuple[Entry, str, int]]) -> None:
        """Dead-letter ``(entry, reason, attempts)`` items and ack them, in one script."""
        args: list[Any] = [backend, now_iso()]
        for entry, reason, attempts in items:
            args += [str(entry.id), entry.body, reason[:1000], attempts]
        keys = [self.stream, self.key(backend), f"{self.prefix}:dlq-seq:{backend}"]
        await self._move(keys=keys, args=args)

    async def add(self, backend: str, items: Sequence[tuple[Entry, str, int]]) -> None:
        """Dead-letter ``(entry, reason, attempts)`` items that are not on the stream."""
        args: list[Any] = [now_iso()]
        for entry, reason, attempts in items:
            args += [str(entry.id), entry.body, reason[:1000], attempts]
        try:
            await self._add(keys=[self.key(backend), f"{self.prefix}:dlq-seq:{backend}"],
                            args=args)
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def letters(
        self, backend: str, limit: int = 100, since: str | None = None
    ) -> list[DeadLetter]:
        """Oldest first; ``since`` is an ISO time lower bound."""
        return [letter for _, letter in await self._matching(backend, None, since, limit)]

    async def counts(self) -> dict[str, int]:
        """Backend → dead letters waiting, for every backend that has any."""
        counts = {}
        try:
            async for key in self.client.scan_iter(match=f"{_glob_escape(self.prefix)}:dlq:*"):
                name = key.decode()
                counts[name.rsplit(":", 1)[1]] = int(await self.client.xlen(name))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return {backend: n for backend, n in counts.items() if n}

    async def replay(self, backend: str, ids: Sequence[int] | None, since: str | None) -> int:
        """Put matching dead letters back on the stream for ``backend`` only, atomically."""
        found = await self._matching(backend, ids, since)
        if not found:
            return 0
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for _, letter in found:
                    pipe.xadd(self.stream, {EVENT_FIELD: letter.body, TARGET_FIELD: backend})
                pipe.xdel(self.key(backend), *(stream_id for stream_id, _ in found))
                await pipe.execute()
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return len(found)

    async def purge(self, backend: str, ids: Sequence[int] | None, since: str | None) -> int:
        found = await self._matching(backend, ids, since)
        if found:
            try:
                await self.client.xdel(self.key(backend), *(stream_id for stream_id, _ in found))
            except RedisError as exc:
                raise _unavailable(exc) from exc
        return len(found)

    async def _matching(
        self, backend: str, ids: Sequence[int] | None, since: str | None, limit: int | None = None
    ) -> list[tuple[bytes, DeadLetter]]:
        """(stream id, letter) of the matching dead letters, oldest first."""
        wanted = {int(i) for i in ids} if ids else None
        found: list[tuple[bytes, DeadLetter]] = []
        start = "-"
        try:
            while limit is None or len(found) < limit:
                chunk: Any = await self.client.xrange(self.key(backend), min=start, count=_CHUNK)
                for stream_id, fields in chunk:
                    letter = _letter(backend, fields)
                    if (wanted is None or letter.id in wanted) and (
                        since is None or letter.failed_at >= since
                    ):
                        found.append((stream_id, letter))
                if len(chunk) < _CHUNK:
                    break
                start = "(" + chunk[-1][0].decode()  # exclusive: after the last one seen
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return found[:limit]


def _letter(backend: str, f: dict[bytes, bytes]) -> DeadLetter:
    return DeadLetter(
        id=int(f[b"n"]),
        backend=backend,
        body=f[b"event"],
        reason=f[b"reason"].decode(),
        attempts=int(f[b"attempts"]),
        failed_at=f[b"failed_at"].decode(),
    )


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _unavailable(exc: RedisError) -> Unavailable:
    return Unavailable(f"redis: {exc}", retry_after=_RETRY_AFTER)


class DeadLetterCommands:
    """``beacon-router dlq …`` on :class:`~router.spool.redis.RedisSpool`: a backend's dead
    letters listed, replayed onto the stream for it alone, or purged."""

    stream: str

    def _letters(self) -> RedisDeadLetters:
        raise NotImplementedError

    def _open_client(self) -> Redis:
        raise NotImplementedError

    async def dead_letters(
        self, backend: str, limit: int = 100, since: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters of ``backend``, oldest first; ``since`` is an ISO time lower bound."""
        return await self._letters().letters(backend, limit, since)

    async def dead_letter_counts(self) -> dict[str, int]:
        return await self._letters().counts()

    async def keep_dead_letters(
        self, backend: str, entries: Sequence[tuple[Entry, str]], attempts: int
    ) -> None:
        """Dead letters of events that were never on the stream (``beacon-router replay``'s)."""
        if entries:
            await self._letters().add(backend, [(e, reason, attempts) for e, reason in entries])

    async def replay(
        self, backend: str, ids: Sequence[int] | None = None, since: str | None = None
    ) -> int:
        """Put dead letters back on the stream for ``backend`` only; returns how many."""
        return await self._letters().replay(backend, ids, since)

    async def purge(
        self,
        backend: str,
        ids: Sequence[int] | None = None,
        since: str | None = None,
        *,
        release_queue: bool = False,
    ) -> int:
        """Delete dead letters of ``backend``; ``release_queue`` also destroys its consumer
        group, so events kept only for a backend no longer configured can be trimmed."""
        purged = await self._letters().purge(backend, ids, since)
        if release_queue:
            try:
                await self._open_client().xgroup_destroy(self.stream, backend)
            except ResponseError:
                pass  # no stream yet: there is no group to release
            except RedisError as exc:
                raise Unavailable(f"redis: {exc}", retry_after=RETRY_AFTER_DOWN) from exc
        return purged
