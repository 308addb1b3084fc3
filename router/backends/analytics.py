"""One view of a router event for the SaaS vendor backends (:class:`AnalyticsEvent`: who did
what, when, with which properties), and the keys every vendor backend takes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from ..config import Duration
from ..errors import Unmappable
from ..event import Event, get_path, iso_z
from .base import Options

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



def tag(value: Any) -> str | None:
    """A vendor's machine-readable error tag (``invalid_api_key``), or None for free text.

    Only short identifier-like strings make it into a dead-letter reason: free text from a vendor
    may quote the event it rejects.
    """
    return value if isinstance(value, str) and _TAG.match(value) else None
