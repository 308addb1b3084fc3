"""What every fuzz target shares: the limits, and running a one-input check under atheris.

A target is ``check(data: bytes) -> None``: it feeds the bytes to one decoder and lets through
only what that decoder may answer (events, or an ``InputError`` a client sees as a 4xx). Any
other exception is a crash for libFuzzer; a call slower than ``-timeout`` is a hang.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris
import orjson

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest import Limits, decode_beacons

LIMITS = Limits(max_body=256 * 1024, max_decompressed=1024 * 1024, max_events=100,
                max_depth=16, max_fields=200, max_aliases=20)


def refused_properly(exc: InputError) -> None:
    """An InputError must carry what a 4xx answer needs."""
    assert 400 <= exc.status < 500 and exc.detail, (exc.status, exc.detail)


def beacon_check(content_type: str) -> Callable[[bytes], None]:
    """The check of ``POST /beacon``'s decoder for one media type: events that the spool can
    store as JSON, within the limits, or a proper InputError."""

    def check(data: bytes) -> None:
        try:
            events = decode_beacons(data, content_type, LIMITS)
        except InputError as exc:
            refused_properly(exc)
            return
        assert events and len(events) <= LIMITS.max_events
        assert all(type(e) is dict for e in events)
        orjson.dumps(events)  # the spool stores every accepted event as JSON

    return check


def main(check: Callable[[bytes], None]) -> None:
    # Always atheris's own libFuzzer (what it picks by itself anyway), also when its library is
    # preloaded ahead of AddressSanitizer's runtime (bench/fuzz/asan.sh): else it takes that
    # copy for an outside libFuzzer and stops with "You must call Setup() before Fuzz()".
    atheris.Setup(sys.argv, check, internal_libfuzzer=True)
    atheris.Fuzz()
