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
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import orjson

from ..errors import RetryableError, Unmappable
from ..event import Event
from .analytics import AnalyticsEvent, to_analytics
from .base import Backend, Request, SendResult
from .http import HttpClient, HttpResponse

# Bodies above this are gzipped in a thread, so a 5 MiB batch does not stall the event loop.
_GZIP_IN_THREAD = 256 * 1024


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
