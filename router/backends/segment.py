"""``type: segment`` — Segment's HTTP Tracking API, ``POST {host}/v1/batch``.

Also RudderStack, Jitsu and other Segment-compatible collectors: change ``host``. Authentication is
HTTP Basic with the write key as user name. The body is ``{"batch": [{"type": "track", "event",
"anonymousId" | "userId", "properties", "timestamp", "messageId", "context"}], "sentAt"}``, at
most 500 KB a request and 32 KB an event (a bigger event is dead-lettered). ``messageId`` is the
router event's uuid, Segment's dedup key.

Segment answers 200 to nearly everything and 400 only to a body it cannot take (bad JSON or over a
size limit): as that is mostly a size problem, a 400 (or 413) halves the part, and a single event
still refused is dead-lettered. 429 and 5xx are retried; other 4xx dead-lettered. A forwarded
PostHog event's ``$set`` goes to ``context.traits``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, SecretStr

from .. import __version__
from .analytics import AnalyticsEvent, HostOptions, iso_z
from .base import Request, classify_status, register
from .http import HttpResponse
from .vendor import Unit, VendorBackend, Verdict

PATH = "/v1/batch"
_LIBRARY = {"name": "beacon-router", "version": __version__}


class SegmentOptions(HostOptions):
    """``host``, ``write_key``, ``identify_as``, ``gzip``."""

    host: str = Field("https://api.segment.io",
                      description="Segment's, its EU endpoint, or a compatible collector's")
    write_key: SecretStr = Field(description="the source's write key (Basic auth user name)")
    identify_as: Literal["anonymousId", "userId"] = Field(
        "anonymousId", description="which Segment id the distinct id fills")
    gzip: bool = Field(False, description="Segment takes gzip; not every compatible collector "
                                          "does")


@register
class SegmentBackend(VendorBackend):
    """Sends ``track`` calls to a Segment-compatible batch endpoint, ``messageId`` for dedup."""

    type = "segment"
    Options = SegmentOptions
    vendor = "segment"
    max_batch_events = None  # Segment limits bytes, not events
    max_request_bytes = 500_000
    max_event_bytes = 32_000

    def __init__(self, name: str, options: SegmentOptions) -> None:
        super().__init__(name, options)
        self.options: SegmentOptions = options
        key = options.write_key.get_secret_value()
        self._auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def compress(self) -> bool:
        return self.options.gzip

    def bodies(self, event: AnalyticsEvent) -> list[dict[str, Any]]:
        context: dict[str, Any] = {"library": _LIBRARY}
        if event.set is not None:
            context["traits"] = event.set
        return [
            {
                "type": "track",
                "event": event.name,
                self.options.identify_as: event.distinct_id,
                "properties": event.properties,
                "timestamp": event.iso_time,
                "messageId": event.uuid,
                "context": context,
            }
        ]

    def envelope(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        return {"batch": bodies, "sentAt": iso_z(datetime.now(UTC))}

    def request(self, part: Sequence[Unit], *, live: bool = False) -> Request:
        headers = {"Content-Type": "application/json", "Authorization": self._auth}
        if self.options.gzip:
            headers["Content-Encoding"] = "gzip"
        return Request(
            "POST",
            self.options.host + PATH,
            headers,
            self.envelope([body for unit in part for body in unit.bodies]),
        )

    def judge(self, response: HttpResponse, part: Sequence[Unit]) -> Verdict:
        if response.status in (400, 413):
            return Verdict.too_large(self.status_reason(response))
        return Verdict.from_result(
            classify_status(
                response.status, len(part), self.status_reason(response), response.headers
            )
        )
