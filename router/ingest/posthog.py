"""PostHog's capture API: the bodies its SDKs send, decoded into events the router keeps.

Capture v0 (``/batch/``, ``/capture/``, ``/e/``, ``/i/v0/e/``, ``/track/``, ``/engage/``) takes a
single event, an array of events (posthog-js) or a batch ``{"api_key", "batch": [...]}``, sent as
JSON, gzip (by header, by ``compression=gzip|gzip-js``, or recognised by its magic bytes),
lz-string base64 (``compression=lz64``), base64, or as the ``data=`` field of a form or a query.
Capture v1 (``/i/v1/analytics/events``) takes ``{"created_at", "batch": [...]}`` with strictly
typed events; it is mapped back to the v0 shape, so both protocols give the same router event.

Each event becomes ``data = {"distinct_id", "properties", "timestamp"?, "$set"?, "$set_once"?}``
named by its ``event``. The project token never enters ``data``, and neither does ``$ip``: the
router does not store client IP addresses, whoever sends them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from ..errors import BadRequest
from ..event import iso_z
from ..posthog_v1 import V1_OPTIONS, V1_TOP_LEVEL
from ..speedups import speedups
from . import json_format
from .limits import Limits
from .posthog_payload import events_payload, is_object, unwrap
from .shape import kind

_SECRET_PROPERTIES = ("token", "$token")  # the project token, kept in memory only
_PRIVATE_PROPERTIES = ("$ip",)  # the router never stores a client IP address
_SCRUBBED = frozenset((*_SECRET_PROPERTIES, *_PRIVATE_PROPERTIES))
_PERSON_UPDATES = frozenset(("$set", "$set_once"))


class Captured(NamedTuple):
    """One PostHog event as the router keeps it: its name, data and the uuid it was sent with.

    A named tuple: the batch path makes one per event with ``tuple.__new__`` (a C call), where
    a frozen dataclass's ``__init__`` cost ~6k instructions (three ``object.__setattr__``)."""

    name: str
    data: dict[str, Any]
    uuid: str | None


_captured = functools.partial(tuple.__new__, Captured)


@dataclass(frozen=True, slots=True)
class Capture:
    """A decoded capture request: its events and the distinct project tokens it carried."""

    events: list[Captured]
    tokens: frozenset[str]


def decode_v0(
    body: bytes,
    *,
    query: Mapping[str, str],
    content_type: str | None,
    engage: bool,
    now: datetime,
    limits: Limits,
) -> Capture:
    """The events of a capture v0 request; BadRequest (or PayloadTooLarge) saying why not.

    ``body`` is already read and, per ``Content-Encoding``, decompressed. ``engage`` is true on
    ``/engage/``, where an event without a name is a person update (``$identify``), as in
    PostHog. ``now`` dates events that give an ``offset`` (milliseconds ago) for a timestamp.
    """
    payload, compression = events_payload(body, query, content_type, limits)
    text = unwrap(payload, compression, limits)
    docs = json_format.decode(text, limits)
    envelope_token = None
    if is_object(text) and "batch" in docs[0]:
        envelope_token = _token_of(docs[0].get("api_key"), docs[0].get("token"))
        docs = _batch(docs[0], limits)
    # A batch's own token stands for all its events, as in PostHog; else each event's counts.
    tokens: set[str] | None = None if envelope_token else set()
    events = _v0_events(docs, engage, now, tokens)
    return Capture(events, frozenset((envelope_token,) if envelope_token else tokens or ()))


def decode_v1(body: bytes, *, sdk_info: str | None, limits: Limits) -> Capture:
    """The events of a capture v1 batch, in the v0 shape; BadRequest naming the first bad one.

    ``sdk_info`` is the ``PostHog-Sdk-Info`` header (``posthog-python/7.1.0``): the v1 SDKs
    send ``$lib`` and ``$lib_version`` there instead of in each event's properties.
    """
    docs = json_format.decode(body, limits)
    if not is_object(body):
        raise BadRequest('capture v1 takes an object {"created_at", "batch": [...]}, not an array')
    items = _batch(docs[0], limits)
    lib = _sdk_properties(sdk_info)
    return Capture([_v1_event(item, i, lib) for i, item in enumerate(items)], frozenset())


def _batch(envelope: dict[str, Any], limits: Limits) -> list[dict[str, Any]]:
    """The events of a ``{"batch": [...]}`` envelope, each an object, within the event cap."""
    items = envelope.get("batch")
    if not isinstance(items, list):
        raise BadRequest(f"`batch` must be an array of events, got {kind(items)}")
    if not items:
        raise BadRequest("`batch` is empty; send at least one event")
    if len(items) > limits.max_events:
        raise BadRequest(f"{len(items)} events, at most {limits.max_events} per request")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"event {index} of the batch is {kind(item)}, expected an object")
    return items


# -- events ------------------------------------------------------------------------------------


def _v0_events(
    docs: list[dict[str, Any]], engage: bool, now: datetime, tokens: set[str] | None
) -> list[Captured]:
    """The v0 events of ``docs``; the tokens they carry themselves (posthog-js sends one in each
    event) added to ``tokens`` unless it is None (the batch's own token stands for them all).

    A batch with its own token whose events are all an SDK's plain ones (named, identified,
    timed, nothing to scrub or lift) is decoded in C (router/_speedups.c) where it was built:
    ~1.0 µs → ~0.3 µs an event. Any other batch is decoded here, from the start."""
    if speedups is not None and tokens is None and not engage:
        events: list[Captured] | None = speedups.v0_events(docs, Captured)
        if events is not None:
            return events
    return _v0_events_loop(docs, engage, now, tokens)


def _v0_events_loop(
    docs: list[dict[str, Any]], engage: bool, now: datetime, tokens: set[str] | None
) -> list[Captured]:
    """``_v0_events`` in Python.

    One loop, no call per field: this runs for every event of every batch (each helper call
    cost ~1k instructions, and the common event, an SDK's, needs none of them). It does what
    ``_v0_event`` below does for one event, in the same order (tests/web/posthog: both ways)."""
    events: list[Captured] = []
    append = events.append
    for index, raw in enumerate(docs):
        get = raw.get
        name = get("event")
        if name is None and engage:
            name = "$identify"  # /engage/ takes bare person updates, as in PostHog
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"event {index}: `event`, the event's name, is required as a string")
        properties = get("properties")
        if properties is None:
            properties = {}
        elif not isinstance(properties, dict):
            raise BadRequest(
                f"event {index}: `properties` must be an object, got {kind(properties)}")
        if tokens is not None:
            token = _token_of(get("api_key"), get("token"), get("$token"), properties.get("token"))
            if token:
                tokens.add(token)
        distinct_id = get("distinct_id")
        if distinct_id is None:
            distinct_id = get("$distinct_id")
            if distinct_id is None:
                distinct_id = properties.get("distinct_id")
        if not isinstance(distinct_id, str) or not distinct_id.strip():
            distinct_id = _identity(distinct_id)
            if distinct_id is None:
                raise BadRequest(f"event {index}: `distinct_id` is required (who did it)")
        if not _SCRUBBED.isdisjoint(properties):
            _scrubbed(properties)
        timestamp = get("timestamp")
        if isinstance(timestamp, str):
            data = {"distinct_id": distinct_id, "properties": properties, "timestamp": timestamp}
        else:
            data = {"distinct_id": distinct_id, "properties": properties}
            _untimed(data, timestamp, get("offset"), index, now)
        if not (_PERSON_UPDATES.isdisjoint(raw) and _PERSON_UPDATES.isdisjoint(properties)):
            _lift_person_updates(data, properties, raw, index)
        uuid = get("uuid")
        append(_captured((name, data, uuid if isinstance(uuid, str) else None)))
    return events


def _untimed(data: dict[str, Any], timestamp: Any, offset: Any, index: int, now: datetime
             ) -> None:
    """An event's time when it has no ``timestamp`` text: posthog-js's ``offset``, or none."""
    if timestamp is not None:
        raise BadRequest(f"event {index}: `timestamp` must be an ISO 8601 string")
    if isinstance(offset, int | float) and not isinstance(offset, bool):
        # posthog-js sends how many milliseconds ago the event happened instead of a time.
        data["timestamp"] = iso_z(now - timedelta(milliseconds=min(max(offset, 0), 10**12)))


def _v0_event(
    raw: dict[str, Any], index: int, engage: bool, now: datetime
) -> tuple[Captured, str | None]:
    """One v0 event and the token it carried itself: the reference for ``_v0_events``, kept
    straightforward (tests check the two give the same events, tokens and errors)."""
    name = raw.get("event")
    if name is None and engage:
        name = "$identify"
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"event {index}: `event`, the event's name, is required as a string")
    properties = _object(raw.get("properties"), index, "properties") or {}
    token = _token_of(
        raw.get("api_key"), raw.get("token"), raw.get("$token"), properties.get("token")
    )
    distinct_id = _identity(
        _first(raw.get("distinct_id"), raw.get("$distinct_id"), properties.get("distinct_id"))
    )
    if distinct_id is None:
        raise BadRequest(f"event {index}: `distinct_id` is required (who did it)")
    data: dict[str, Any] = {"distinct_id": distinct_id, "properties": _scrubbed(properties)}
    timestamp = raw.get("timestamp")
    if timestamp is not None and not isinstance(timestamp, str):
        raise BadRequest(f"event {index}: `timestamp` must be an ISO 8601 string")
    offset = raw.get("offset")
    if timestamp is None and isinstance(offset, int | float) and not isinstance(offset, bool):
        when = now - timedelta(milliseconds=min(max(offset, 0), 10**12))
        timestamp = iso_z(when)
    if timestamp is not None:
        data["timestamp"] = timestamp
    _lift_person_updates(data, properties, raw, index)
    uuid = raw.get("uuid")
    return Captured(name, data, uuid if isinstance(uuid, str) else None), token


def _v1_event(raw: dict[str, Any], index: int, lib: dict[str, str]) -> Captured:
    """One v1 event in the v0 shape: options, session and window back inside properties."""
    name, uuid, distinct_id, timestamp = (
        raw.get(k) for k in ("event", "uuid", "distinct_id", "timestamp")
    )
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"event {index}: `event`, the event's name, is required as a string")
    if not isinstance(uuid, str) or not _is_uuid(uuid.strip()):
        raise BadRequest(f"event {index}: `uuid` is required in capture v1 and must be a UUID")
    if not isinstance(distinct_id, str) or not distinct_id.strip():
        raise BadRequest(f"event {index}: `distinct_id` is required as a non-empty string")
    if not isinstance(timestamp, str) or not timestamp.strip():
        raise BadRequest(f"event {index}: `timestamp` is required as an RFC 3339 string")
    properties = _object(raw.get("properties"), index, "properties") or {}
    options = _object(raw.get("options"), index, "options") or {}
    for wire, key in V1_TOP_LEVEL:
        if isinstance(raw.get(wire), str):
            properties.setdefault(key, raw[wire])
    for wire, key, _kind in V1_OPTIONS:
        if options.get(wire) is not None:
            properties.setdefault(key, options[wire])
    for key, value in lib.items():
        properties.setdefault(key, value)
    data: dict[str, Any] = {
        "distinct_id": distinct_id.strip(),
        "properties": _scrubbed(properties),
        "timestamp": timestamp.strip(),
    }
    _lift_person_updates(data, properties, {}, index)
    return Captured(name, data, uuid.strip())


def _lift_person_updates(
    data: dict[str, Any], properties: dict[str, Any], raw: dict[str, Any], index: int
) -> None:
    """``$set`` / ``$set_once`` in one place, ``data``'s top level, whichever the SDK used.

    SDKs put person updates on top (posthog-python v0), in properties (posthog-node,
    every v1 SDK) or both; PostHog merges them, so the router does, and every backend finds
    them in one place. On a clash the value in properties wins, as the v1 SDKs decide.
    """
    for key in ("$set", "$set_once"):
        top = _object(raw.get(key), index, key)
        inside = properties.get(key)
        if isinstance(inside, dict):
            del properties[key]
            top = {**(top or {}), **inside}
        if top is not None:
            data[key] = top


def _object(value: Any, index: int, key: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise BadRequest(f"event {index}: `{key}` must be an object, got {kind(value)}")


def _scrubbed(properties: dict[str, Any]) -> dict[str, Any]:
    for key in (*_SECRET_PROPERTIES, *_PRIVATE_PROPERTIES):
        properties.pop(key, None)
    return properties


def _first(*values: Any) -> Any:
    # A loop, not next(<generator>): this runs for every event of every batch, and building a
    # generator per call cost more than the search.
    for value in values:
        if value is not None:
            return value
    return None


def _identity(value: Any) -> str | None:
    """A distinct id as PostHog reads it: a string as is, anything else as its JSON text."""
    if value is None:
        return None
    text = (
        value
        if isinstance(value, str)
        else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    )
    return text if text.strip() else None


def _token_of(*values: Any) -> str | None:
    for value in values:
        if value and isinstance(value, str):
            return value
    return None


_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")


def _is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def _sdk_properties(sdk_info: str | None) -> dict[str, str]:
    """``posthog-python/7.1.0`` → ``{"$lib": "posthog-python", "$lib_version": "7.1.0"}``."""
    if not sdk_info:
        return {}
    lib, _, version = sdk_info.strip().partition("/")
    found = {"$lib": lib[:64]} if lib else {}
    if version:
        found["$lib_version"] = version[:64]
    return found
