"""``type: amplitude`` — Amplitude's HTTP V2 API, ``POST {host}/2/httpapi``.

``{"api_key", "events": [{"event_type", "device_id" | "user_id", "time" (ms), "insert_id",
"event_properties", "user_properties"?}], "options": {"min_id_length"}}``, at most 2000 events
and 1 MB a request. ``insert_id`` is the router event's uuid: Amplitude ignores a repeated one for
7 days, so retries do not double-count.

Amplitude rejects ids shorter than 5 characters unless ``options.min_id_length`` says otherwise.
Rather than pad ids (which would invent identities), the request always states
``min_id_length`` (default 1, so every non-empty id is taken as it is).

A ``400`` rejects the whole request and names the bad events (``events_with_invalid_fields``,
``events_with_missing_fields``, ``events_with_invalid_id_lengths``: field → indexes;
``silenced_events``: indexes): those are dead-lettered and the others sent again at once, as
Amplitude's docs prescribe. A 400 naming no event is dead-lettered whole. 413 → the part is
halved; 429 (a device or user over its rate) is retried after Retry-After, or 30 s, Amplitude's
advice; 5xx retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from .. import __version__
from .analytics import AnalyticsEvent, HostOptions, tag
from .base import Request, classify_status, parse_retry_after, register
from .http import HttpResponse
from .vendor import Unit, VendorBackend, Verdict, json_body

REGIONS = {"us": "https://api2.amplitude.com", "eu": "https://api.eu.amplitude.com"}
PATH = "/2/httpapi"
THROTTLE_WAIT = 30.0  # seconds: Amplitude's advice after a 429
_LIBRARY = f"beacon-router/{__version__}"


class AmplitudeOptions(HostOptions):
    """``region`` or ``host``, ``api_key``, ``identify_as``, ``min_id_length``."""

    region: Literal["us", "eu"] | None = Field(None, description="data residency; default us")
    host: str | None = Field(None, description="a base URL instead of `region` (a proxy)")
    api_key: SecretStr = Field(description="the project API key")
    identify_as: Literal["device_id", "user_id"] = Field(
        "device_id", description="which Amplitude id the distinct id fills")
    min_id_length: int = Field(1, ge=1, description="sent with every request; Amplitude's own "
                                                    "default, 5, refuses shorter ids")

    @model_validator(mode="after")
    def _one_place(self) -> AmplitudeOptions:
        if self.region is not None and self.host is not None:
            raise ValueError("set region or host, not both")
        return self

    @property
    def base_url(self) -> str:
        return self.host or REGIONS[self.region or "us"]


@register
class AmplitudeBackend(VendorBackend):
    """Sends events to Amplitude, ``insert_id`` as the dedup key."""

    type = "amplitude"
    Options = AmplitudeOptions
    vendor = "amplitude"
    max_batch_events = 2000
    max_request_bytes = 1_000_000
    secret_body_keys = frozenset({"api_key"})

    def __init__(self, name: str, options: AmplitudeOptions) -> None:
        super().__init__(name, options)
        self.options: AmplitudeOptions = options

    def bodies(self, event: AnalyticsEvent) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "event_type": event.name,
            self.options.identify_as: event.distinct_id,
            "time": event.millis,
            "insert_id": event.uuid,
            "event_properties": dict(event.properties),
            "library": _LIBRARY,
        }
        user_properties = {}
        if event.set is not None:
            user_properties["$set"] = event.set
        if event.set_once is not None:
            user_properties["$setOnce"] = event.set_once
        if user_properties:
            body["user_properties"] = user_properties
        return [body]

    def envelope(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "api_key": self.options.api_key.get_secret_value(),
            "events": bodies,
            "options": {"min_id_length": self.options.min_id_length},
        }

    def request(self, part: Sequence[Unit], *, live: bool = False) -> Request:
        return Request(
            "POST",
            self.options.base_url + PATH,
            {"Content-Type": "application/json", "Accept": "*/*"},
            self.envelope([body for unit in part for body in unit.bodies]),
        )

    def judge(self, response: HttpResponse, part: Sequence[Unit]) -> Verdict:
        status = response.status
        answer = json_body(response)
        answer = answer if isinstance(answer, dict) else {}
        if status == 413:
            return Verdict.too_large(self.status_reason(response, "request too large"))
        if status == 429:
            wait = parse_retry_after(response.headers)
            return Verdict.retry_all(
                len(part),
                self.status_reason(response, "throttled"),
                THROTTLE_WAIT if wait is None else wait,
            )
        if status == 400:
            dead = _rejected(answer, len(part))
            if dead:
                rest = tuple(pos for pos in range(len(part)) if pos not in dead)
                return Verdict(dead=dead, resend=rest, reason=next(iter(dead.values())))
            missing = tag(answer.get("missing_field"))
            return Verdict.dead_all(
                len(part), self.status_reason(response, f"missing {missing}" if missing else None)
            )
        return Verdict.from_result(
            classify_status(status, len(part), self.status_reason(response), response.headers)
        )


def _rejected(answer: dict[str, Any], n: int) -> dict[int, str]:
    """Index → reason for every event a 400 names."""
    dead: dict[int, str] = {}
    for key, what in (
        ("events_with_invalid_fields", "invalid"),
        ("events_with_missing_fields", "missing"),
        ("events_with_invalid_id_lengths", "too short"),
    ):
        fields = answer.get(key)
        if not isinstance(fields, dict):
            continue
        for field, indexes in fields.items():
            for index in indexes if isinstance(indexes, list) else ():
                if isinstance(index, int) and 0 <= index < n:
                    dead.setdefault(index, f"amplitude: {what} {tag(field) or 'field'}")
    silenced = answer.get("silenced_events")
    for index in silenced if isinstance(silenced, list) else ():
        if isinstance(index, int) and 0 <= index < n:
            dead.setdefault(index, "amplitude: silenced device or user")
    return dead
