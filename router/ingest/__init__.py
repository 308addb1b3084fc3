"""Ingest: read a request body within limits and decode it into events (dicts).

``read_body`` reads and decompresses; ``decode_beacons`` picks the decoder for the media type.
Every refusal is an :class:`~router.errors.InputError` (400, 413 or 415), never anything else.
"""

from __future__ import annotations

from .beacon import ACCEPTED, decode_beacons, decoder_for, parse_media_type
from .body import ENCODINGS, decompress, read_body
from .limits import Limits

__all__ = [
    "ACCEPTED",
    "ENCODINGS",
    "Limits",
    "decode_beacons",
    "decoder_for",
    "decompress",
    "parse_media_type",
    "read_body",
]
