"""State that router instances share through Redis when the spool is Redis: what ``dedupe`` has
seen, and the rate-limit buckets, so that both hold across instances (docs/scaling.md).

Keys, under the spool's ``key_prefix``, beside the stream:

    <prefix>:dedupe:<scope>:<digest>      a key a dedupe filter has seen; expires after its window
    <prefix>:ratelimit:<limit>:<digest>   a token bucket (hash: tokens, at); expires once full again
    <prefix>:ratelimit-salt:<day>         the salt of that UTC day's bucket digests; two days

None holds a raw value: a dedupe key is the filter's 16-byte BLAKE2b of the key fields, a
bucket's a 16-byte BLAKE2b of the client address or installation id keyed with the day's salt.

Each operation is one round trip: a Lua script for the dedupe keys of a whole request and for a
request's buckets. Redis unreachable: dedupe fails closed (ingest answers 503, as the spool write
would) and rate limits fail open, since refusing every client because the limiter is away would
turn a Redis outage into a total one; the spool write refuses anyway. The outage is logged once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import structlog
from redis.exceptions import RedisError

from ..config import SpoolConfig
from ..errors import Unavailable
from ..ratelimit import bucket_digest
from .redis_client import RedisOutage, connect

log = structlog.get_logger(__name__)

_RETRY_AFTER_DOWN = 5.0  # what clients are told while Redis is unreachable (as the spool)
_FORGET_CHUNK = 1000  # keys per forget script call
_MAX_FORGOTTEN = 100_000  # keys waiting to be forgotten while Redis is away; the oldest go first
_SALT_TTL = 2 * 86400  # seconds: a day's salt outlives the day by one, for late instances
_DAY = 86400

# KEYS: a request's dedupe keys, in order; ARGV[1]: the window (ms), ARGV[2]: this call's token.
# Per key: 1 if another event holds it (a duplicate), else 0 and it is recorded for this event.
# The value names the event (token:index), so the same call sent again after a lost reply finds
# its own keys and is not told they are duplicates, and a forget deletes only what it recorded.
_RECORD = """
local out = {}
for i, key in ipairs(KEYS) do
  local mine = ARGV[2] .. ':' .. i
  local held = redis.call('GET', key)
  if held and held ~= mine then
    out[i] = 1
  else
    if not held then redis.call('SET', key, mine, 'PX', ARGV[1]) end
    out[i] = 0
  end
end
return out
"""

# KEYS: dedupe keys; ARGV: the value each was recorded with. Deletes the keys still holding it.
_FORGET = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then n = n + redis.call('DEL', key) end
end
return n
"""

# KEYS: buckets; ARGV[1]: rate (tokens a second), ARGV[2]: burst, ARGV[2 + i]: tokens wanted
# from KEYS[i]. All or none, as router.ratelimit.TokenBuckets.take: "0" if granted, else the
# seconds until it would be. Redis's clock, so instances with skewed clocks agree. A bucket
# expires once it would be full again, which is what an absent bucket is.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local left, wait = {}, 0
for i, key in ipairs(KEYS) do
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local level = burst
  if b[1] then
    level = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate)
  end
  local need = math.min(tonumber(ARGV[2 + i]), burst)
  if level < need then wait = math.max(wait, (need - level) / rate) end
  left[i] = level - need
end
if wait > 0 then return tostring(wait) end
local ttl = math.ceil((burst / rate + 1) * 1000)
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tokens', tostring(left[i]), 'at', tostring(now))
  redis.call('PEXPIRE', key, ttl)
end
return '0'
"""


class RedisShared:
    """One router process's handle on the shared state (see the module docstring)."""

    def __init__(self, url: str, key_prefix: str) -> None:
        self.client = connect(url)  # its own pool: see redis_client
        self.prefix = key_prefix
        self._record = self.client.register_script(_RECORD)
        self._forget = self.client.register_script(_FORGET)
        self._take = self.client.register_script(_TAKE)
        self._outage = RedisOutage(
            "redis unavailable for shared state: rate limits are not enforced and dedupe "
            "answers 503 until it is back", label="redis available again for shared state")
        self._salt: tuple[int, bytes] | None = None  # (UTC day, salt)
        self._forgotten: dict[str, str] = {}  # key → the value it was recorded with
        self._forgetter: asyncio.Task[None] | None = None

    @classmethod
    def for_spool(cls, spool: SpoolConfig) -> RedisShared | None:
        """The shared state of a router on ``spool``: None unless the spool is Redis."""
        if spool.type != "redis" or spool.url is None:
            return None
        return cls(spool.url, spool.key_prefix)

    async def aclose(self) -> None:
        """Try once more to forget what waits to be forgotten, then disconnect."""
        if self._forgetter is not None:
            self._forgetter.cancel()
            await asyncio.wait({self._forgetter})
            self._forgetter = None
        if self._forgotten:
            try:
                await self._forget_some()
            except RedisError as exc:
                log.warning(
                    "dedupe keys of refused events could not be forgotten; their retries are "
                    "dropped as duplicates until the window ends",
                    keys=len(self._forgotten),
                    error=str(exc) or type(exc).__name__,
                )
        await self.client.aclose()

    # -- dedupe ------------------------------------------------------------------------------

    def seen_set(self, scope: str, window: float) -> RedisSeenSet:
        """The seen keys of one dedupe filter (``scope`` keeps filters apart)."""
        return RedisSeenSet(self, f"{self.prefix}:dedupe:{scope}:", window)

    async def record(self, keys: Sequence[str], window: float) -> list[Callable[[], None] | None]:
        """For each key in order: None if another event holds it, else how to forget it."""
        if not keys:
            return []
        if self._outage.waiting():
            raise self._unavailable()
        token = os.urandom(8).hex()
        try:
            held = await self._record(keys=keys, args=[max(1, round(window * 1000)), token])
        except RedisError as exc:
            self._outage.failed(exc)
            raise self._unavailable() from exc
        self._outage.recovered()
        return [
            None if h else partial(self.forget, key, f"{token}:{i}")
            for i, (key, h) in enumerate(zip(keys, held, strict=True), start=1)
        ]

    def forget(self, key: str, value: str) -> None:
        """Delete ``key`` if it still holds ``value``, soon: in the background, retried while
        Redis is unreachable, so that the refused client's retry is not a duplicate."""
        self._forgotten[key] = value
        if len(self._forgotten) > _MAX_FORGOTTEN:
            del self._forgotten[next(iter(self._forgotten))]
        if self._forgetter is None or self._forgetter.done():
            self._forgetter = asyncio.get_running_loop().create_task(
                self._forget_all(), name="shared:forget"
            )

    async def _forget_all(self) -> None:
        while self._forgotten:
            try:
                await self._forget_some()
            except RedisError as exc:
                self._outage.failed(exc)
                await asyncio.sleep(max(self._outage.next_try - time.monotonic(), 0.0))
                continue
            self._outage.recovered()

    async def _forget_some(self) -> None:
        while self._forgotten:
            batch = list(itertools.islice(self._forgotten.items(), _FORGET_CHUNK))
            await self._forget(keys=[k for k, _ in batch], args=[v for _, v in batch])
            for key, value in batch:
                if self._forgotten.get(key) == value:
                    del self._forgotten[key]

    # -- rate limits -------------------------------------------------------------------------

    def token_buckets(self, limit: str, rate: float, burst: float) -> RedisTokenBuckets:
        """The buckets of one limit (``ip``, ``installation``)."""
        return RedisTokenBuckets(self, f"{self.prefix}:ratelimit:{limit}:", rate, burst)

    async def take(
        self, prefix: str, rate: float, burst: float, wanted: Mapping[str, int]
    ) -> float:
        """``RedisTokenBuckets.take``; 0.0 (granted) while Redis is unreachable."""
        if self._outage.waiting():
            return 0.0
        try:
            salt = await self._day_salt()
            keys = [prefix + bucket_digest(value, salt).hex() for value in wanted]
            wait = await self._take(keys=keys, args=[rate, burst, *wanted.values()])
        except RedisError as exc:
            self._outage.failed(exc)
            return 0.0
        self._outage.recovered()
        return float(wait)

    async def _day_salt(self) -> bytes:
        """This UTC day's salt, the same for every instance: the first to need it makes it."""
        day = int(time.time() // _DAY)
        if self._salt is not None and self._salt[0] == day:
            return self._salt[1]
        key = f"{self.prefix}:ratelimit-salt:{day}"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(key, os.urandom(32), nx=True, ex=_SALT_TTL)
            pipe.get(key)
            _, salt = await pipe.execute()
        if not salt:  # deleted between the two commands: the next call makes another
            raise RedisError("rate-limit salt vanished")
        self._salt = (day, bytes(salt))
        return self._salt[1]

    @staticmethod
    def _unavailable() -> Unavailable:
        return Unavailable(
            "duplicates cannot be checked right now; try again later",
            retry_after=_RETRY_AFTER_DOWN,
        )


class RedisSeenSet:
    """A dedupe filter's seen keys in Redis: ``SharedSeenSet`` (router.filters.quality)."""

    def __init__(self, shared: RedisShared, prefix: str, window: float) -> None:
        self._shared, self._prefix, self.window = shared, prefix, window

    async def record(self, keys: Sequence[bytes]) -> list[Callable[[], None] | None]:
        """For each key in order: None if seen less than a window ago (a duplicate); else it is
        recorded now, and the callable forgets it again. One round trip for all of them."""
        return await self._shared.record([self._prefix + k.hex() for k in keys], self.window)


class RedisTokenBuckets:
    """``TokenBuckets`` in Redis, shared by every instance; keyed by raw values that are
    digested here with the day's salt, so only the digests reach Redis."""

    def __init__(self, shared: RedisShared, prefix: str, rate: float, burst: float) -> None:
        self._shared, self._prefix, self.rate, self.burst = shared, prefix, rate, burst

    async def take(self, wanted: Mapping[str, int]) -> float:
        """Take tokens from every value's bucket, all or none: 0.0 if granted (or Redis is
        unreachable), else the seconds until it would be."""
        return await self._shared.take(self._prefix, self.rate, self.burst, wanted)
