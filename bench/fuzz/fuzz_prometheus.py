"""Fuzz the Prometheus text and OpenMetrics decoders (the first byte picks which)."""

from __future__ import annotations

import atheris
import orjson
from common import LIMITS, main, refused_properly

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest import decode_beacons

TYPES = ("text/plain; version=0.0.4", "application/openmetrics-text; version=1.0.0")


def check(data: bytes) -> None:
    if not data:
        return
    try:
        events = decode_beacons(data[1:], TYPES[data[0] & 1], LIMITS)
    except InputError as exc:
        refused_properly(exc)
        return
    assert events and len(events) <= LIMITS.max_events
    orjson.dumps(events)


if __name__ == "__main__":
    main(check)
