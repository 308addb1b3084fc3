"""Fuzz gzip, deflate and zstd decompression under a cap (the first byte picks the encoding)."""

from __future__ import annotations

import atheris
from common import main, refused_properly

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest import decompress

ENCODINGS = ("gzip", "deflate", "zstd")
CAP = 64 * 1024


def check(data: bytes) -> None:
    if not data:
        return
    try:
        out = decompress(data[1:], ENCODINGS[data[0] % len(ENCODINGS)], CAP)
    except InputError as exc:
        refused_properly(exc)
        return
    assert len(out) <= CAP


if __name__ == "__main__":
    main(check)
