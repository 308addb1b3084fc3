"""``type: posthog`` — PostHog's capture API: ``/batch/`` (default) or capture v1.

``capture_mode: batch`` posts ``{"api_key", "batch": [...], "historical_migration", "sent_at"}``
to ``{host}/batch/``, gzip-compressed, as posthog-python does. PostHog answers for the request as
a whole: 2xx delivered; 413 → the part is halved and each half resent; 408/429/5xx retried with
Retry-After; any other 4xx dead-lettered.

``capture_mode: v1`` posts ``{"created_at", "batch": [...]}`` to ``{host}/i/v1/analytics/events``
with ``Authorization: Bearer`` and the ``PostHog-*`` headers, and reads the per-event answer
``{"results": {"<uuid>": {"result": "ok" | "warning" | "retry" | "drop", "details"?}}}``: only
events answered ``retry`` are retried, ``drop`` ones are dead-lettered, the rest are delivered.
The wire rules follow posthog-python's ``capture_v1.py`` (typed ``options``, ``$set`` inside
properties, ``$lib`` left to the server, which reads it from ``PostHog-Sdk-Info``).

Every event carries the router event's ``uuid``, PostHog's dedup key. With ``groups:``, native
beacons get ``$groups`` and each distinct group in a batch one ``$groupidentify`` event (with a
uuid derived from its event's, so a retry is deduplicated too) whose ``$group_set`` holds the
beacon's properties: how PostHog models one installation of a B2B product.
"""

from __future__ import annotations

import uuid as uuid_lib
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, SecretStr

from .. import __version__
from ..event import Event, get_path
from ..posthog_v1 import V1_OPTIONS, V1_TOP_LEVEL
from .analytics import AnalyticsEvent, HostOptions, iso_z, tag
from .base import Request, classify_status, register
from .http import HttpResponse
from .vendor import Unit, VendorBackend, Verdict, json_body

SDK_INFO = f"beacon-router/{__version__}"
BATCH_PATH = "/batch/"
V1_PATH = "/i/v1/analytics/events"
# Derives $groupidentify uuids and v1 request ids from event uuids: stable across retries.
_NAMESPACE = uuid_lib.UUID("5b0d1e0c-6f38-4a55-9a59-3c4c2f5e7d21")
_V1_SERVER_SET = ("$lib", "$lib_version")
# What the router adds to an event's properties, not the installation's to set on its group.
_NOT_GROUP_SET = frozenset({"$groups", "$geoip_disable"})


class PostHogOptions(HostOptions):
    """``host``, ``api_key`` (project key), ``groups``, ``capture_mode``, ``gzip``."""

    host: str = Field("https://us.i.posthog.com",
                      description="https://us.i.posthog.com, https://eu.i.posthog.com, or yours")
    # May expand to "" when the backend is disabled with `enabled: "${POSTHOG_API_KEY:+true}"`.
    api_key: SecretStr = Field(description="the project API key (phc_...)")
    groups: dict[str, str] = Field(
        default_factory=dict, description="group type → dotted path of its key; each group "
                                          "also gets a $groupidentify")
    capture_mode: Literal["batch", "v1"] = Field(
        "batch", description="batch: POST /batch/; v1: /i/v1/analytics/events")
    gzip: bool = Field(True, description="compress request bodies")
    historical_migration: bool = Field(False, description="true for large backfills")
    geoip_disable: bool = Field(
        True, description="send $geoip_disable: true, so PostHog does not locate the router's "
                          "own address")
    country: str | None = Field(
        "geo.country", description="property path of a country code (the geoip filter's) sent "
                                   "as $geoip_country_code")
    region: str | None = Field(
        "geo.region", description="property path of a region code sent as "
                                  "$geoip_subdivision_1_code")


@register
class PostHogBackend(VendorBackend):
    """Sends events to PostHog's capture API, ``uuid`` as the dedup key."""

    type = "posthog"
    Options = PostHogOptions
    vendor = "posthog"
    max_batch_events = None  # PostHog limits bytes, not events
    # posthog-python's limits: 5 MiB a request (the server takes 20 MiB), 900 KiB an event.
    max_request_bytes = 5 * 1024 * 1024
    max_event_bytes = 900 * 1024
    secret_body_keys = frozenset({"api_key"})

    def __init__(self, name: str, options: PostHogOptions) -> None:
        super().__init__(name, options)
        self.options: PostHogOptions = options
        self._v1 = options.capture_mode == "v1"
        # PostHog-Attempt per PostHog-Request-Id; bounded, and losing it on restart is harmless.
        self._attempts: OrderedDict[str, int] = OrderedDict()

    def compress(self) -> bool:
        return self.options.gzip

    # -- mapping

    def bodies(self, event: AnalyticsEvent) -> list[dict[str, Any]]:
        return [self._v1_event(event) if self._v1 else self._batch_event(event)]

    def _properties(self, event: AnalyticsEvent) -> dict[str, Any]:
        properties = dict(event.properties)
        if not event.forwarded and self.options.groups:
            groups = self._groups_of(event.properties)
            if groups:
                properties["$groups"] = groups
        self._geoip(properties)
        return properties

    def _geoip(self, properties: dict[str, Any]) -> None:
        """PostHog locates an event by the address that sent it: the router's, for every event.
        Turn that off, and pass on the country the ``geoip`` filter derived, if any."""
        options = self.options
        if options.geoip_disable:
            properties.setdefault("$geoip_disable", True)
        for path, key in ((options.country, "$geoip_country_code"),
                          (options.region, "$geoip_subdivision_1_code")):
            value = get_path(properties, path) if path else None
            if isinstance(value, str) and value:
                properties.setdefault(key, value)

    def _groups_of(self, data: Any) -> dict[str, str]:
        groups = {}
        for group_type, path in self.options.groups.items():
            key = get_path(data, path)
            if key is not None and not isinstance(key, dict | list | bool) and str(key):
                groups[group_type] = str(key)
        return groups

    def _batch_event(self, event: AnalyticsEvent) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event": event.name,
            "distinct_id": event.distinct_id,
            "properties": self._properties(event),
            # A forwarded event keeps its own timestamp string, so it round-trips unchanged.
            "timestamp": event.client_timestamp or event.iso_time,
            "uuid": event.uuid,
        }
        if event.set is not None:
            body["$set"] = event.set
        if event.set_once is not None:
            body["$set_once"] = event.set_once
        return body

    def _v1_event(self, event: AnalyticsEvent) -> dict[str, Any]:
        properties = self._properties(event)
        # v1 has no top-level $set / $set_once; on a clash the value in properties wins.
        for key, value in (("$set", event.set), ("$set_once", event.set_once)):
            existing = properties.get(key)
            if value is not None and isinstance(existing, dict):
                properties[key] = {**value, **existing}
            elif value is not None and key not in properties:
                properties[key] = value
        for key in _V1_SERVER_SET:
            properties.pop(key, None)
        options: dict[str, Any] = {}
        for wire, key, kind in V1_OPTIONS:
            if key in properties:
                value = _coerce(properties.pop(key), kind)
                if value is not None:  # a wrongly typed option would fail the whole batch
                    options[wire] = value
        body: dict[str, Any] = {
            "event": event.name,
            "uuid": event.uuid,
            "distinct_id": event.distinct_id,
            "timestamp": event.iso_time,  # v1 parses strict RFC 3339 in UTC
            "options": options,
            "properties": properties,
        }
        for wire, key in V1_TOP_LEVEL:
            if key in properties:
                value = properties.pop(key)
                if isinstance(value, str):
                    body[wire] = value
        return body

    def units(self, batch: Sequence[Event]) -> tuple[list[Unit], dict[int, str]]:
        units, dead = super().units(batch)
        if not self.options.groups:
            return units, dead
        # One $groupidentify per distinct group, from the batch's latest event of that group,
        # carried in the same request as that event.
        seen: set[tuple[str, str]] = set()
        for pos in range(len(units) - 1, -1, -1):
            unit = units[pos]
            event = batch[unit.index]
            if event.source == "posthog":
                continue
            properties = unit.bodies[0]["properties"]
            for group_type, key in properties.get("$groups", {}).items():
                if (group_type, key) in seen:
                    continue
                seen.add((group_type, key))
                group_data = {k: v for k, v in properties.items() if k not in _NOT_GROUP_SET}
                unit = unit.with_companion(self._group_identify(unit, group_type, key, group_data))
            too_big = self.oversize(unit)
            if too_big:
                dead[unit.index] = too_big
                del units[pos]
            else:
                units[pos] = unit
        return units, dead

    def _group_identify(
        self, unit: Unit, group_type: str, key: str, group_set: dict[str, Any]
    ) -> dict[str, Any]:
        origin = unit.bodies[0]
        body: dict[str, Any] = {
            "event": "$groupidentify",
            "distinct_id": f"${group_type}_{key}",  # as posthog-go and older posthog-python
            "properties": {"$group_type": group_type, "$group_key": key, "$group_set": group_set},
            "timestamp": origin["timestamp"],
            "uuid": str(uuid_lib.uuid5(_NAMESPACE, f"{origin['uuid']}/{group_type}")),
        }
        if self.options.geoip_disable:
            body["properties"]["$geoip_disable"] = True
        if self._v1:
            body["options"] = {}
        return body

    # -- requests

    def envelope(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        now = iso_z(datetime.now(UTC))
        if self._v1:
            body: dict[str, Any] = {"created_at": now, "batch": bodies}
            if self.options.historical_migration:
                body["historical_migration"] = True
            return body
        return {
            "api_key": self.options.api_key.get_secret_value(),
            "batch": bodies,
            "historical_migration": self.options.historical_migration,
            "sent_at": now,
        }

    def request(self, part: Sequence[Unit], *, live: bool = False) -> Request:
        bodies = [body for unit in part for body in unit.bodies]
        headers = {"Content-Type": "application/json"}
        if self.options.gzip:
            headers["Content-Encoding"] = "gzip"
        if not self._v1:
            return Request("POST", self.options.host + BATCH_PATH, headers, self.envelope(bodies))
        # The same events retried carry the same request id and a growing attempt number.
        request_id = str(uuid_lib.uuid5(_NAMESPACE, ",".join(b["uuid"] for b in bodies)))
        headers.update(
            {
                "Authorization": f"Bearer {self.options.api_key.get_secret_value()}",
                "User-Agent": SDK_INFO,
                "PostHog-Sdk-Info": SDK_INFO,
                "PostHog-Attempt": str(self._attempt_number(request_id) if live else 1),
                "PostHog-Request-Id": request_id,
                "PostHog-Request-Timestamp": iso_z(datetime.now(UTC)),
            }
        )
        return Request("POST", self.options.host + V1_PATH, headers, self.envelope(bodies))

    def _attempt_number(self, request_id: str) -> int:
        attempt = self._attempts.pop(request_id, 0) + 1
        self._attempts[request_id] = attempt
        while len(self._attempts) > 4096:
            self._attempts.popitem(last=False)
        return attempt

    # -- answers

    def judge(self, response: HttpResponse, part: Sequence[Unit]) -> Verdict:
        status = response.status
        answer = json_body(response)
        detail = tag(answer.get("code")) if isinstance(answer, dict) else None
        if status == 413:
            return Verdict.too_large(self.status_reason(response, "request too large"))
        if self._v1 and 200 <= status < 300:
            return self._judge_results(answer, part, response)
        return Verdict.from_result(
            classify_status(
                status, len(part), self.status_reason(response, detail), response.headers
            )
        )

    def _judge_results(self, answer: Any, part: Sequence[Unit], response: HttpResponse) -> Verdict:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, dict):
            # Resending is safe (PostHog deduplicates by uuid); dropping silently is not.
            return Verdict.retry_all(len(part), self.status_reason(response, "no results map"))
        retry: list[int] = []
        dead: dict[int, str] = {}
        reason = ""
        for pos, unit in enumerate(part):
            own = results.get(unit.bodies[0]["uuid"])
            own = own if isinstance(own, dict) else {}
            # A $groupidentify answered retry makes its event retried; its drop is only logged
            # by PostHog: the next beacon sets the group again.
            companions = [results.get(b["uuid"]) for b in unit.bodies[1:]]
            if own.get("result") == "drop":
                dead[pos] = f"posthog dropped the event ({tag(own.get('details')) or 'drop'})"
                reason = reason or dead[pos]
            elif own.get("result") == "retry" or any(
                isinstance(c, dict) and c.get("result") == "retry" for c in companions
            ):
                retry.append(pos)
                reason = reason or f"posthog asked to retry ({tag(own.get('details')) or 'retry'})"
        return Verdict(retry=tuple(retry), dead=dead, reason=reason)


def _coerce(value: Any, kind: type) -> Any:
    """posthog-python's coercion of v1 option values; None when the value does not fit."""
    if kind is str:
        return value if isinstance(value, str) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
    if isinstance(value, int | float):
        return value != 0
    return None
