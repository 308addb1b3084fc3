"""Fuzz the lz-string (base64) decoder PostHog's JS SDK's ``compression=lz64`` uses."""

from __future__ import annotations

import atheris
from common import main, refused_properly

with atheris.instrument_imports():
    from router.errors import InputError
    from router.ingest.lz64 import decompress

CAP = 64 * 1024


def check(data: bytes) -> None:
    try:
        out = decompress(data, CAP)
    except InputError as exc:
        refused_properly(exc)
        return
    assert len(out) <= CAP


if __name__ == "__main__":
    main(check)
