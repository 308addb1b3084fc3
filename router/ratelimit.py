"""Ingest rate limits: token buckets keyed by a salted digest of who is sending.

Two limits, both off unless configured under ``limits:``: requests per client IP, checked before
the body is read, and events per installation, checked after decoding and before the pipeline
hashes the id. A bucket's key is a keyed BLAKE2b digest, so the buckets hold neither an IP
address nor an installation id.

In memory by default (``check_client``, ``check_installations``): the salt is drawn at start-up
and never written, and nothing here is ever stored. Memory is bounded: past ``max_tracked`` keys
the least recently used bucket is forgotten, and a forgotten bucket is a full one, so forgetting
errs on the client's side. On a Redis spool the buckets are in Redis, shared by every instance
(``shared`` is true; ``check_client_shared``, ``check_installations_shared``; router/shared.py):
keyed by the same digests under a daily salt kept there, and expiring on their own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from .config import LimitsConfig, RateLimitConfig
from .errors import TooManyRequests

if TYPE_CHECKING:
    from .spool.redis_shared import RedisShared, RedisTokenBuckets

Clock = Callable[[], float]
IPv6_CLIENT_PREFIX = 64  # one IPv6 client usually owns a whole /64: limit the prefix, not the host


class TokenBuckets:
    """One bucket of ``burst`` tokens per key, refilled at ``rate`` tokens per second."""

    def __init__(
        self, rate: float, burst: float, max_keys: int, clock: Clock = time.monotonic
    ) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # tokens, when

    @classmethod
    def from_config(
        cls, config: RateLimitConfig, max_keys: int, clock: Clock = time.monotonic
    ) -> TokenBuckets:
        return cls(*rate_and_burst(config), max_keys, clock)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, wanted: Mapping[bytes, int]) -> float:
        """Take tokens from every key's bucket, all or none: 0.0 if granted, else the seconds
        until it would be. More than ``burst`` at once is granted from a full bucket."""
        now = self._clock()
        levels = {key: self._level(key, now) for key in wanted}
        wait = 0.0
        for key, n in wanted.items():
            need = min(n, self.burst)
            if levels[key] < need:
                wait = max(wait, (need - levels[key]) / self.rate)
        if wait:
            return wait
        for key, n in wanted.items():
            self._buckets[key] = (levels[key] - min(n, self.burst), now)
            self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0.0

    def _level(self, key: bytes, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)


def rate_and_burst(config: RateLimitConfig) -> tuple[float, float]:
    """A limit's refill rate (tokens a second) and bucket size."""
    burst = config.burst if config.burst is not None else max(1, math.ceil(config.rate))
    return config.rate / config.per, burst


def bucket_digest(value: str, salt: bytes) -> bytes:
    """The key of ``value``'s bucket: a keyed BLAKE2b, so no bucket holds the value itself."""
    return hashlib.blake2b(
        value.encode("utf-8", "surrogatepass"), key=salt, digest_size=16
    ).digest()


class RateLimits:
    """``limits:`` as ingest applies them (see the module docstring); ``shared`` keeps the
    buckets there instead of in this process's memory."""

    def __init__(
        self,
        config: LimitsConfig,
        clock: Clock = time.monotonic,
        shared: RedisShared | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._salt = os.urandom(32)
        self._proxies = tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies)
        self.trusted_proxies = bool(self._proxies)  # else client_ip is always the peer's address
        self._store = shared
        self.per_ip: TokenBuckets | None = None
        self.per_installation: TokenBuckets | None = None
        self.shared_per_ip: RedisTokenBuckets | None = None
        self.shared_per_installation: RedisTokenBuckets | None = None
        if shared is None:
            self.per_ip = self._buckets(config.per_ip)
            self.per_installation = self._buckets(config.per_installation)
        else:
            self.shared_per_ip = self._shared_buckets(shared, "ip", config.per_ip)
            self.shared_per_installation = self._shared_buckets(
                shared, "installation", config.per_installation
            )
        # Ingest awaits the shared checks only when there is a shared limit to check.
        self.shared = bool(self.shared_per_ip or self.shared_per_installation)

    def _buckets(self, limit: RateLimitConfig | None) -> TokenBuckets | None:
        if limit is None:
            return None
        return TokenBuckets.from_config(limit, self.config.max_tracked, self._clock)

    @staticmethod
    def _shared_buckets(
        shared: RedisShared, name: str, limit: RateLimitConfig | None
    ) -> RedisTokenBuckets | None:
        return None if limit is None else shared.token_buckets(name, *rate_and_burst(limit))

    def reconfigured(self, config: LimitsConfig) -> RateLimits:
        """Limits for a reloaded ``config``, keeping the buckets of every unchanged limit (in
        Redis they stay whatever changed: a changed rate applies to their levels)."""
        new = RateLimits(config, self._clock, self._store)
        if self._store is not None:
            return new
        new._salt = self._salt
        if config.per_ip == self.config.per_ip and config.max_tracked == self.config.max_tracked:
            new.per_ip = self.per_ip
        if (
            config.per_installation == self.config.per_installation
            and config.max_tracked == self.config.max_tracked
        ):
            new.per_installation = self.per_installation
        return new

    def client_ip(self, remote: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: ``remote``, or, when that is a trusted proxy, the nearest
        address in ``X-Forwarded-For`` that is not one (proxies append; clients can forge the
        left end, so it is read from the right)."""
        if not self._proxies or not forwarded_for or not self._trusted(remote):
            return remote
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else remote

    def _trusted(self, address: str | None) -> bool:
        ip = _parse_ip(address)
        return ip is not None and any(ip in network for network in self._proxies)

    def check_client(self, ip: str | None) -> None:
        """TooManyRequests when ``ip`` is over ``limits.per_ip`` (in memory)."""
        if self.per_ip is None or not ip:
            return
        wait = self.per_ip.take({self._digest(_client_key(ip)): 1})
        if wait:
            raise TooManyRequests(
                "too many requests from this address; retry later", retry_after=wait
            )

    async def check_client_shared(self, ip: str | None) -> None:
        """``check_client`` on the buckets every instance shares."""
        if self.shared_per_ip is None or not ip:
            return
        wait = await self.shared_per_ip.take({_client_key(ip): 1})
        if wait:
            raise TooManyRequests(
                "too many requests from this address; retry later", retry_after=wait
            )

    def check_installations(self, ids: Iterable[object]) -> None:
        """TooManyRequests when an installation in ``ids`` (raw, one per event; None for an
        event without one) is over ``limits.per_installation``; nothing is taken then."""
        if self.per_installation is None:
            return
        wanted = Counter(self._digest(str(i)) for i in ids if i is not None and i != "")
        if not wanted:
            return
        wait = self.per_installation.take(wanted)
        if wait:
            raise TooManyRequests(
                "too many events for this installation; retry later", retry_after=wait
            )

    async def check_installations_shared(self, ids: Iterable[object]) -> None:
        """``check_installations`` on the buckets every instance shares."""
        if self.shared_per_installation is None:
            return
        wanted = Counter(str(i) for i in ids if i is not None and i != "")
        if not wanted:
            return
        wait = await self.shared_per_installation.take(wanted)
        if wait:
            raise TooManyRequests(
                "too many events for this installation; retry later", retry_after=wait
            )

    def _digest(self, value: str) -> bytes:
        return bucket_digest(value, self._salt)


def _parse_ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _client_key(address: str) -> str:
    """An IPv4 address as is; an IPv6 address as its /64 (one subscriber's usual share)."""
    ip = _parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPv6_CLIENT_PREFIX), strict=False))
    return str(ip) if ip is not None else address
