"""JSON beacons: one object, or an array of objects (``application/json``, sendBeacon text)."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import BadRequest
from ..speedups import speedups
from .limits import Limits
from .shape import as_events, too_deep

_ORJSON_DEPTH_MESSAGE = "depth limit exceeded"  # orjson's own cap (1024), far above ours


def decode(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    """The events in a JSON body; BadRequest naming the problem and where it is if invalid."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body or body.isspace():  # told here, not scanned for on every body
            raise BadRequest("body is empty; send a JSON object or an array of objects") from None
        if exc.msg == _ORJSON_DEPTH_MESSAGE:
            raise too_deep(limits.max_depth) from exc
        raise BadRequest(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if speedups is not None:  # the depth walk in C: a third of the cost of the count below
        return as_events(doc, limits, fmt="JSON")
    # Every level of nesting opens with one of these bytes, so their count bounds the depth:
    # a typical beacon has a handful and skips the depth walk altogether. (A large body will
    # be walked anyway, so the second scan is spared when the first already passes the limit.)
    openers = body.count(b"{")
    if openers <= limits.max_depth:
        openers += body.count(b"[")
    return as_events(doc, limits, fmt="JSON", max_possible_depth=openers)
