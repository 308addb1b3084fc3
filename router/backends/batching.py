"""What the SaaS vendor backends (posthog, mixpanel, amplitude, segment) share.

1. One view of a router event, whatever its source: :class:`AnalyticsEvent` (who, what, when,
   which properties), built by :func:`to_analytics`.
2. Cutting a batch into requests that fit a vendor's limits on events and encoded bytes
   (:func:`cut`), measured exactly on the bytes that will be sent.
3. :class:`VendorBackend`: the send loop. It posts each part, lets the vendor module judge the
   answer (:class:`Verdict`), halves a part the vendor found too large, resends at once the events
   a vendor rejected only because of their neighbours, stops when the vendor is throttling or down,
   and folds everything back into one ``SendResult`` indexed by the batch it was given.

A vendor module only says how one event looks on its wire, what its envelope and headers are, and
what its answers mean.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar

import orjson
from pydantic import Field, field_validator

from ..config import Duration
from ..errors import RetryableError
from ..event import Event, get_path
from .base import Backend, Options, Request, SendResult
from .http import HttpClient, HttpResponse

# Bodies above this are gzipped in a thread, so a 5 MiB batch does not stall the event loop.
_GZIP_IN_THREAD = 256 * 1024
_TAG = re.compile(r"^[A-Za-z0-9_.$-]{1,64}$")


class VendorOptions(Options):
    """Keys every vendor backend takes: how a native beacon is named and identified."""

    event: str = Field("installation_heartbeat", min_length=1,
                       description="the vendor's event name for a native beacon")
    distinct_id: str = Field("installation_id", min_length=1,
                             description="dotted path of the id the vendor counts; missing: "
                                         "the event is dead-lettered")
    timeout: Duration = Field(10.0, gt=0, description="per request")


def http_host(value: str) -> str:
    """Validate an ``http(s)://host[:port][/prefix]`` base URL; no trailing slash."""
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
        raise ValueError("must be an http:// or https:// base URL, e.g. https://api.example.com")
    return value.rstrip("/")


class HostOptions(VendorOptions):
    """Vendor options with a ``host`` base URL."""

    @field_validator("host", check_fields=False)
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return None if v is None else http_host(v)


# --------------------------------------------------------------------------------------------
# One view of a router event


class Unmappable(Exception):
    """This event can never be sent to the vendor; the message is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class AnalyticsEvent:
    """A router event as analytics vendors see it: who did what, when, with which properties.

    ``forwarded`` is True for events that came in through the PostHog capture API (their name,
    distinct id and properties are the client's own); False for native beacons, named and
    identified by the backend's ``event`` / ``distinct_id`` options, with the beacon as properties.
    ``client_timestamp`` is the forwarded event's own timestamp string, kept verbatim.
    """

    uuid: str
    name: str
    distinct_id: str
    properties: Mapping[str, Any]
    time: datetime
    forwarded: bool = False
    client_timestamp: str | None = None
    set: Mapping[str, Any] | None = None
    set_once: Mapping[str, Any] | None = None

    @property
    def iso_time(self) -> str:
        """The event time as UTC ISO 8601 with milliseconds and ``Z``."""
        return iso_z(self.time)

    @property
    def millis(self) -> int:
        """The event time in milliseconds since the epoch."""
        return int(self.time.timestamp() * 1000)


def to_analytics(event: Event, options: VendorOptions) -> AnalyticsEvent:
    """Map a router event; raise :class:`Unmappable` when it has no usable distinct id."""
    data = event.data
    if event.source == "posthog":
        distinct_id = _identity(data.get("distinct_id"))
        if distinct_id is None:
            raise Unmappable("no distinct_id in the PostHog event")
        properties = data.get("properties")
        raw_ts = data.get("timestamp")
        return AnalyticsEvent(
            uuid=event.uuid,
            name=event.name,
            distinct_id=distinct_id,
            properties=properties if isinstance(properties, dict) else {},
            time=parse_time(raw_ts) or _received(event),
            forwarded=True,
            client_timestamp=raw_ts if isinstance(raw_ts, str) and parse_time(raw_ts) else None,
            set=_mapping(data.get("$set")),
            set_once=_mapping(data.get("$set_once")),
        )
    distinct_id = _identity(get_path(data, options.distinct_id))
    if distinct_id is None:
        # Dead-lettered rather than sent under a made-up id: a random id would count one new
        # "installation" per event. Fix the pipeline or the `distinct_id:` path, then replay.
        raise Unmappable(f"no usable distinct id at {options.distinct_id!r}")
    name = options.event if event.name == "beacon" else event.name
    return AnalyticsEvent(
        uuid=event.uuid,
        name=name,
        distinct_id=distinct_id,
        properties=data,
        time=parse_time(data.get("timestamp")) or _received(event),
    )


def _identity(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if text.strip() else None


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def _received(event: Event) -> datetime:
    return parse_time(event.received_at) or datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string (naive means UTC), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso_z(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``: the one spelling every vendor accepts."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tag(value: Any) -> str | None:
    """A vendor's machine-readable error tag (``invalid_api_key``), or None for free text.

    Only short identifier-like strings make it into a dead-letter reason: free text from a vendor
    may quote the event it rejects.
    """
    return value if isinstance(value, str) and _TAG.match(value) else None


# --------------------------------------------------------------------------------------------
# Cutting a batch into parts


@dataclass(frozen=True, slots=True)
class Unit:
    """One event of the batch as the vendor's JSON objects: usually one, sometimes with a
    companion (PostHog's ``$groupidentify``) that must travel in the same request."""

    index: int  # position in the batch given to ``send``
    bodies: tuple[dict[str, Any], ...]
    sizes: tuple[int, ...]  # encoded bytes of each body

    @classmethod
    def of(cls, index: int, *bodies: dict[str, Any]) -> Unit:
        return cls(index, bodies, tuple(len(orjson.dumps(b)) for b in bodies))

    @property
    def size(self) -> int:
        """Encoded bytes inside a JSON array, with the commas between the bodies."""
        return sum(self.sizes) + len(self.sizes) - 1

    def with_companion(self, body: dict[str, Any]) -> Unit:
        return Unit(self.index, (*self.bodies, body), (*self.sizes, len(orjson.dumps(body))))


def cut(
    units: Iterable[Unit], *, max_events: int | None, max_bytes: int, overhead: int
) -> list[list[Unit]]:
    """Greedy split, in order, so no part exceeds ``max_events`` bodies or ``max_bytes``.

    ``overhead`` is the encoded size of the envelope with an empty list; each unit then adds its
    size plus a comma. A unit too big for any request must be dead-lettered before this.
    """
    parts: list[list[Unit]] = []
    current: list[Unit] = []
    count = size = 0
    for unit in units:
        n, extra = len(unit.bodies), unit.size + (1 if current else 0)
        if current and (
            (max_events is not None and count + n > max_events)
            or overhead + size + extra > max_bytes
        ):
            parts.append(current)
            current, count, size, extra = [], 0, 0, unit.size
        current.append(unit)
        count += n
        size += extra
    if current:
        parts.append(current)
    return parts


# --------------------------------------------------------------------------------------------
# Judging answers and folding them into one SendResult


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one answer means for the units of the part it carried (positions within the part).

    Positions in neither ``retry``, ``dead`` nor ``resend`` were delivered. ``split``: the part was
    too large, send each half instead. ``resend``: the vendor refused these only because of other
    events in the request (which are in ``dead``); send them again at once.
    """

    retry: tuple[int, ...] = ()
    dead: Mapping[int, str] = field(default_factory=dict)
    reason: str = ""
    retry_after: float | None = None
    split: bool = False
    resend: tuple[int, ...] = ()

    @classmethod
    def retry_all(cls, n: int, reason: str, retry_after: float | None = None) -> Verdict:
        return cls(retry=tuple(range(n)), reason=reason, retry_after=retry_after)

    @classmethod
    def dead_all(cls, n: int, reason: str) -> Verdict:
        return cls(dead=dict.fromkeys(range(n), reason), reason=reason)

    @classmethod
    def too_large(cls, reason: str) -> Verdict:
        return cls(split=True, reason=reason)

    @classmethod
    def from_result(cls, result: SendResult) -> Verdict:
        return cls(
            retry=result.retry,
            dead=result.dead,
            reason=result.reason,
            retry_after=result.retry_after,
        )


class Tally:
    """Per-part verdicts folded into one ``SendResult`` for the whole batch."""

    def __init__(self, dead: Mapping[int, str] | None = None) -> None:
        self.retry: dict[int, None] = {}  # an ordered set
        self.dead: dict[int, str] = dict(dead or {})
        self.retry_reason = ""
        self.retry_after: float | None = None

    def add(self, part: Sequence[Unit], verdict: Verdict) -> None:
        for pos, reason in verdict.dead.items():
            self.dead[part[pos].index] = reason
        self.add_retry([part[pos] for pos in verdict.retry], verdict.reason, verdict.retry_after)

    def add_retry(self, units: Iterable[Unit], reason: str, retry_after: float | None) -> None:
        added = False
        for unit in units:
            if unit.index not in self.dead:
                self.retry[unit.index] = None
                added = True
        if added:
            self.retry_reason = self.retry_reason or reason
            if retry_after is not None:
                self.retry_after = max(self.retry_after or 0.0, retry_after)

    def result(self) -> SendResult:
        if not self.retry and not self.dead:
            return SendResult.delivered()
        reason = self.retry_reason or next(iter(self.dead.values()))
        return SendResult(
            retry=tuple(sorted(self.retry)),
            dead=self.dead,
            reason=reason,
            retry_after=self.retry_after,
        )


# --------------------------------------------------------------------------------------------
# The send loop


class VendorBackend(Backend):
    """Base of the HTTP analytics vendors: map, cut, post, judge, fold.

    Subclasses set the limits and implement :meth:`units` (or :meth:`bodies`),
    :meth:`envelope`, :meth:`request` and :meth:`judge`.
    """

    vendor: ClassVar[str] = ""
    max_request_bytes: ClassVar[int] = 1 << 20  # encoded, before compression
    max_event_bytes: ClassVar[int | None] = None  # one encoded event
    # Body keys and headers that hold credentials: shown as *** by ``render``.
    secret_body_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, options: Any) -> None:
        super().__init__(name, options)
        self._http = HttpClient(timeout=options.timeout)

    # -- what a vendor module implements

    def bodies(self, event: AnalyticsEvent) -> list[dict[str, Any]]:
        """The vendor's JSON object(s) for one event."""
        raise NotImplementedError

    def envelope(self, bodies: list[dict[str, Any]]) -> Any:
        """The request's JSON document around ``bodies``; its length must not depend on them."""
        raise NotImplementedError

    def request(self, part: Sequence[Unit], *, live: bool = False) -> Request:
        """The request for ``part``; ``live`` when it is really sent (not rendered)."""
        raise NotImplementedError

    def judge(self, response: HttpResponse, part: Sequence[Unit]) -> Verdict:
        """What the vendor's answer means for each unit of ``part``."""
        raise NotImplementedError

    def compress(self) -> bool:
        """Whether request bodies are gzip-compressed."""
        return False

    # -- shared machinery

    def units(self, batch: Sequence[Event]) -> tuple[list[Unit], dict[int, str]]:
        """The batch as units, and the events that can never be sent (index → reason)."""
        units: list[Unit] = []
        dead: dict[int, str] = {}
        for index, event in enumerate(batch):
            try:
                unit = Unit.of(index, *self.bodies(to_analytics(event, self.options)))
            except Unmappable as exc:
                dead[index] = str(exc)
                continue
            reason = self.oversize(unit)
            if reason:
                dead[index] = reason
            else:
                units.append(unit)
        return units, dead

    def oversize(self, unit: Unit) -> str | None:
        """Why ``unit`` can never fit a request, or None."""
        if self.max_event_bytes is not None and max(unit.sizes) > self.max_event_bytes:
            return f"event over the {self.vendor} limit of {self.max_event_bytes} bytes"
        if self.overhead + unit.size > self.max_request_bytes:
            return f"event over the {self.vendor} request limit of {self.max_request_bytes} bytes"
        return None

    def parts(self, units: Sequence[Unit]) -> list[list[Unit]]:
        return cut(
            units,
            max_events=self.max_batch_events,
            max_bytes=self.max_request_bytes,
            overhead=self.overhead,
        )

    @cached_property
    def overhead(self) -> int:
        """Encoded bytes of the envelope around an empty list (its length never varies)."""
        return len(orjson.dumps(self.envelope([])))

    def render(self, batch: Sequence[Event]) -> list[Request]:
        units, _ = self.units(batch)
        return [self._masked(self.request(part)) for part in self.parts(units)]

    async def send(self, batch: Sequence[Event]) -> SendResult:
        units, dead = self.units(batch)
        tally = Tally(dead)
        queue: deque[tuple[list[Unit], bool]] = deque((p, True) for p in self.parts(units))
        while queue:
            part, may_resend = queue.popleft()
            verdict = await self._attempt(part)
            if verdict.split:
                if len(part) == 1:
                    tally.add(part, Verdict.dead_all(1, verdict.reason))
                else:
                    half = len(part) // 2
                    queue.extendleft([(part[half:], may_resend), (part[:half], may_resend)])
                continue
            tally.add(part, verdict)
            if verdict.resend:
                rest = [part[pos] for pos in verdict.resend]
                if may_resend:
                    queue.appendleft((rest, False))
                else:  # refused twice for other events' faults: leave it to the retry schedule
                    tally.add_retry(rest, f"{self.vendor}: refused again with invalid events", None)
            if part and len(verdict.retry) == len(part):
                # Throttled or down: hitting it with the rest of the batch now would not help.
                while queue:
                    tally.add_retry(queue.popleft()[0], verdict.reason, verdict.retry_after)
        return tally.result()

    async def _attempt(self, part: Sequence[Unit]) -> Verdict:
        request = self.request(part, live=True)
        raw = orjson.dumps(request.body)
        headers = dict(request.headers)
        if self.compress():
            raw = (
                await asyncio.to_thread(gzip.compress, raw)
                if len(raw) > _GZIP_IN_THREAD
                else gzip.compress(raw)
            )
        try:
            response = await self._http.request(
                request.method, request.url, headers=headers, body=raw
            )
        except RetryableError as exc:
            return Verdict.retry_all(len(part), f"{self.vendor}: {exc.reason}")
        return self.judge(response, part)

    def _masked(self, request: Request) -> Request:
        headers = {
            k: _mask_auth(v) if k.lower() == "authorization" else v
            for k, v in request.headers.items()
        }
        body = request.body
        if isinstance(body, dict) and self.secret_body_keys:
            body = {k: "***" if k in self.secret_body_keys else v for k, v in body.items()}
        return Request(request.method, request.url, headers, body)

    async def aclose(self) -> None:
        await self._http.aclose()

    def status_reason(self, response: HttpResponse, detail: str | None = None) -> str:
        """``"<vendor>: HTTP 400 (invalid_payload)"``: short, and never the vendor's free text."""
        suffix = f" ({detail})" if detail else ""
        return f"{self.vendor}: HTTP {response.status}{suffix}"


def _mask_auth(value: str) -> str:
    scheme, _, _ = value.partition(" ")
    return f"{scheme} ***"


def json_body(response: HttpResponse) -> Any:
    """The response body as JSON, or None."""
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
