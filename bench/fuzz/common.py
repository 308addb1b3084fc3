"""What every fuzz target shares: the limits, and running a one-input check under atheris.

A target is ``check(data: bytes) -> None``: it feeds the bytes to one decoder and lets through
only what that decoder may answer (events, or an ``InputError`` a client sees as a 4xx). Any
other exception is a crash for libFuzzer; a call slower than ``-timeout`` is a hang.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest import Limits

LIMITS = Limits(max_body=256 * 1024, max_decompressed=1024 * 1024, max_events=100,
                max_depth=16, max_fields=200, max_aliases=20)


def refused_properly(exc: InputError) -> None:
    """An InputError must carry what a 4xx answer needs."""
    assert 400 <= exc.status < 500 and exc.detail, (exc.status, exc.detail)


def main(check: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
