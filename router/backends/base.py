"""What every backend is: ``async send(batch) -> SendResult`` and ``async aclose()``.

*Whether* to retry is the backend's call (it knows its vendor's status codes); *how* — backoff,
jitter, Retry-After, dead-lettering — is the delivery worker's.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..event import Event
from ..sources import Profiles


class Options(BaseModel):
    """Base of a backend's own config keys: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a backend made of a batch.

    Indexes refer to the batch passed to ``send``. Events in neither ``retry`` nor ``dead`` were
    delivered. ``retry_after`` is the server's Retry-After in seconds, if it sent one.
    """

    retry: tuple[int, ...] = ()
    dead: Mapping[int, str] = field(default_factory=dict)
    reason: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return not self.retry and not self.dead

    @classmethod
    def delivered(cls) -> SendResult:
        return _OK

    @classmethod
    def retry_all(cls, n: int, reason: str, retry_after: float | None = None) -> SendResult:
        return cls(retry=tuple(range(n)), reason=reason, retry_after=retry_after)

    @classmethod
    def combine(cls, singles: Sequence[SendResult]) -> SendResult:
        """One result for a batch sent one event per request: ``singles[i]`` is event i's.
        The first failure's reason stands for all; the longest Retry-After is kept."""
        retry = tuple(i for i, r in enumerate(singles) if r.retry)
        dead = {i: r.dead[0] for i, r in enumerate(singles) if r.dead}
        failed = [r for r in singles if not r.ok]
        waits = [r.retry_after for r in failed if r.retry_after is not None]
        return cls(retry=retry, dead=dead, reason=failed[0].reason if failed else "",
                   retry_after=max(waits) if waits else None) if failed else _OK

    @classmethod
    def dead_all(cls, n: int, reason: str) -> SendResult:
        return cls(dead=dict.fromkeys(range(n), reason), reason=reason)


_OK = SendResult()


@dataclass(frozen=True, slots=True)
class Request:
    """One request a backend would make: what ``dry-run`` prints and ``send`` sends."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: Any  # JSON-able for JSON APIs; rows for stores; lines for files


class Backend:
    """Base class: a named backend built from its validated ``Options``."""

    type: ClassVar[str] = ""
    Options: ClassVar[builtins.type[BaseModel]]  # absent on a type that takes no options
    # The largest batch the vendor accepts; the worker never hands over more.
    max_batch_events: ClassVar[int | None] = None
    # Whether ``send_spooled`` takes events as the spool holds them (their JSON, undecoded);
    # a backend may decide per instance, from its options.
    sends_spooled: bool = False
    # Whether ``send_spooled`` decodes each body itself and refuses, by index, one that is no
    # event's JSON: then delivery need not check a batch's framing first.
    decodes_spooled: bool = False
    # Whether ``migrate`` has tables to create (stores).
    has_tables: ClassVar[bool] = False

    def __init__(self, name: str, options: Any = None) -> None:
        self.name, self.options = name, options

    def render(self, batch: Sequence[Event]) -> list[Request]:
        """The exact requests ``send`` would make for ``batch`` (used by ``dry-run``)."""
        raise NotImplementedError

    async def send(self, batch: Sequence[Event]) -> SendResult:
        raise NotImplementedError

    async def send_spooled(self, bodies: Sequence[bytes]) -> SendResult:
        """``send`` for events as the spool holds them (only where ``sends_spooled``)."""
        raise NotImplementedError

    async def migrate(self) -> None:
        """Create tables ahead of the first send (only where ``has_tables``)."""

    def use_profiles(self, profiles: Profiles) -> None:
        """Told the config's source profiles when built; a backend that sends events in
        their product's own shape (the webhook's client formats) keeps them."""

    async def aclose(self) -> None:
        """Release connections; called once at shutdown."""


def classify_status(status: int, n: int, reason: str, headers: Mapping[str, str] | None = None
                    ) -> SendResult:
    """The usual HTTP rule: 2xx delivered; 408/429/5xx (but 501) retried; other 4xx dead."""
    if 200 <= status < 300:
        return SendResult.delivered()
    if status in (408, 425, 429) or (status >= 500 and status != 501):
        return SendResult.retry_all(n, reason, parse_retry_after(headers))
    return SendResult.dead_all(n, reason)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped at one day."""
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), 86400.0)


BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend available under its ``type``."""
    BACKENDS[cls.type] = cls
    return cls
