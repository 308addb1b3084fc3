"""Fuzz PostHog capture bodies: v0 (query, content type, compression chosen by the fuzzer,
JSON, form ``data=``, base64, gzip-js, lz64) and v1."""

from __future__ import annotations

from datetime import UTC, datetime

import atheris
from common import LIMITS, main, refused_properly

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest.posthog import decode_v0, decode_v1

CONTENT_TYPES = (None, "application/json", "application/x-www-form-urlencoded", "text/plain")
COMPRESSIONS = (None, "gzip-js", "lz64", "base64", "gzip", "")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    version = fdp.ConsumeIntInRange(0, 1)
    content_type = CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    compression = COMPRESSIONS[fdp.ConsumeIntInRange(0, len(COMPRESSIONS) - 1)]
    engage = fdp.ConsumeBool()
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    query = {"compression": compression} if compression is not None else {}
    try:
        if version == 0:
            capture = decode_v0(body, query=query, content_type=content_type, engage=engage,
                                now=NOW, limits=LIMITS)
        else:
            capture = decode_v1(body, sdk_info="posthog-python/7.1.0", limits=LIMITS)
    except InputError as exc:
        refused_properly(exc)
        return
    assert len(capture.events) <= LIMITS.max_events


if __name__ == "__main__":
    main(check)
