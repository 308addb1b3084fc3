"""Fuzz the form beacon decoder: events or a proper InputError, nothing else."""

from __future__ import annotations

import atheris
import orjson
from common import LIMITS, main, refused_properly

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest import decode_beacons

CONTENT_TYPE = "application/x-www-form-urlencoded"


def check(data: bytes) -> None:
    try:
        events = decode_beacons(data, CONTENT_TYPE, LIMITS)
    except InputError as exc:
        refused_properly(exc)
        return
    assert events and len(events) <= LIMITS.max_events and all(type(e) is dict for e in events)
    orjson.dumps(events)  # the spool stores every accepted event as JSON


if __name__ == "__main__":
    main(check)
