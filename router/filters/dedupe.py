"""The ``dedupe`` filter: drop an event whose key fields were seen within a window (a client's
retries), in this process's memory or, on a Redis spool, in memory every router instance shares."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import orjson
from pydantic import Field

from ..config import Duration
from ..event import _MISSING, Event, get_path, split_path
from .base import Filter, Options, register
from .fields import FieldPath
from .privacy import canonical_bytes


class SeenSet(Protocol):
    """Remembers keys for a window, in this process (``MemorySeenSet``)."""

    def seen(self, key: bytes, now: float) -> bool:
        """True if ``key`` was recorded less than a window ago; else record it at ``now``."""
        ...

    def forget(self, key: bytes) -> None:
        """Drop ``key`` (its event was not stored after all)."""
        ...


class SharedSeenSet(Protocol):
    """A SeenSet router instances share (``router.spool.redis_shared.RedisSeenSet``): the keys
    of a request are asked about together, in one round trip."""

    async def record(self, keys: Sequence[bytes]) -> list[Callable[[], None] | None]:
        """For each key in order: None if seen less than a window ago (a duplicate), else it is
        recorded now and the callable forgets it again (a key twice in ``keys`` is a duplicate
        the second time)."""
        ...


class SharedStore(Protocol):
    """Where shared SeenSets come from (``router.spool.redis_shared.RedisShared``)."""

    def seen_set(self, scope: str, window: float) -> SharedSeenSet: ...


class MemorySeenSet:
    """An in-process SeenSet: at most ``max_keys`` keys, oldest forgotten first, O(1) per call.

    The window is fixed from the first sighting (a duplicate does not extend it), so a client
    retrying every hour is still counted once a day rather than never again.
    """

    def __init__(self, window: float, max_keys: int) -> None:
        self.window, self.max_keys = window, max_keys
        self._first_seen: OrderedDict[bytes, float] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._first_seen)

    def seen(self, key: bytes, now: float) -> bool:
        keys = self._first_seen
        # Entries are in time order, so expiry only ever looks at the front.
        while keys:
            oldest, at = next(iter(keys.items()))
            if now - at < self.window:
                break
            del keys[oldest]
        if key in keys:
            return True
        keys[key] = now
        if len(keys) > self.max_keys:
            keys.popitem(last=False)
        return False

    def forget(self, key: bytes) -> None:
        self._first_seen.pop(key, None)


class _NotHere:
    """The SeenSet of a dedupe whose memory is shared: per-event calls are a bug."""

    def seen(self, key: bytes, now: float) -> bool:
        raise TypeError("a shared dedupe decides per request: `await Pipeline.run(events)`")

    def forget(self, key: bytes) -> None:
        raise TypeError("a shared dedupe forgets through what its shared set returned")


class DedupeOptions(Options):
    """``fields`` that identify a sender, the ``window`` to count it once in, a memory bound."""

    fields: list[FieldPath] = Field(min_length=1, description="paths that identify a sender")
    window: Duration = Field(gt=0, description="count a sender once in this long, e.g. 24h")
    max_keys: int = Field(1_000_000, gt=0,
                          description="memory bound (~200 bytes a key); the oldest forgotten")
    by_name: bool = Field(True, description="count each event name separately")


@register
class Dedupe(Filter):
    """Drop an event whose key fields were already seen within ``window`` (e.g. retries).

    In this process's memory by default; in the global pipeline of a router on a Redis spool,
    ``share`` moves the memory to Redis so that every instance sees every key (``call_batch``).
    """

    type = "dedupe"
    Options = DedupeOptions
    drop_reason = "duplicate"

    def __init__(
        self,
        options: DedupeOptions,
        *,
        seen: SeenSet | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(options)
        self._paths = [split_path(p) for p in options.fields]
        self._by_name = options.by_name
        self._window = options.window
        self._seen = seen if seen is not None else MemorySeenSet(options.window, options.max_keys)
        self._shared: SharedSeenSet | None = None
        self._clock = clock
        # Names this filter's keys in a shared store: the same fields, the same memory (a
        # reload that only changes ``window`` keeps it).
        digest = hashlib.blake2b(digest_size=8)
        digest.update(orjson.dumps([list(options.fields), self._by_name]))
        self.shared_scope = digest.hexdigest()


    def share(self, store: SharedStore, scope: str) -> None:
        """Keep the seen keys in ``store`` from now on: the pipeline then calls ``call_batch``."""
        self._shared = store.seen_set(scope, self._window)
        self._seen = _NotHere()  # a per-event call now would quietly dedupe in this process only
        self.call_batch = self._check_shared

    def key(self, event: Event) -> bytes | None:
        """A digest of the key values (never the values themselves); None if all are missing."""
        values = [get_path(event.data, path, _MISSING) for path in self._paths]
        if all(v is _MISSING for v in values):
            return None  # nothing identifies the sender: never a duplicate of another such event
        digest = hashlib.blake2b(digest_size=16)
        if self._by_name:
            digest.update(canonical_bytes(event.name) + b"\0")
        for v in values:
            # A length prefix keeps ("ab", "c") and ("a", "bc") apart; b"-" marks a missing field.
            part = b"-" if v is _MISSING else b"=" + canonical_bytes(v)
            digest.update(len(part).to_bytes(8, "big") + part)
        return digest.digest()

    def __call__(self, event: Event) -> Event | None:
        key = self.key(event)
        if key is None:
            return event
        if self._seen.seen(key, self._clock()):
            return None
        event.undo = [*(event.undo or ()), partial(self._seen.forget, key)]
        return event

    async def _check_shared(self, events: list[Event]) -> list[Event | None]:
        """``__call__`` for all of a request's events at once, against the shared set."""
        assert self._shared is not None
        keys = [self.key(e) for e in events]
        forgets = iter(await self._shared.record([k for k in keys if k is not None]))
        out: list[Event | None] = []
        for event, key in zip(events, keys, strict=True):
            if key is None:
                out.append(event)
            elif (forget := next(forgets)) is None:
                out.append(None)
            else:
                event.undo = [*(event.undo or ()), forget]
                out.append(event)
        return out
