"""``POST /beacon``: pick the decoder for a body's media type and return its events."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ..errors import UnsupportedMedia
from . import form, json_format, prometheus, yaml_format
from .limits import Limits

Decoder = Callable[[bytes, Limits], list[dict[str, Any]]]

ACCEPTED = (
    "application/json",
    "application/*+json",
    "text/plain",
    "text/plain; version=0.0.4",
    "application/openmetrics-text",
    "application/x-www-form-urlencoded",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
)
"""The media types ``POST /beacon`` reads, as told to a client that sent another."""

_DECODERS: dict[str, Decoder] = {
    "application/json": json_format.decode,
    "text/plain": json_format.decode,  # navigator.sendBeacon(url, JSON.stringify(…)) sends this
    "application/openmetrics-text": prometheus.decode_openmetrics,
    "application/x-www-form-urlencoded": form.decode,
    "application/yaml": yaml_format.decode,
    "application/x-yaml": yaml_format.decode,
    "text/yaml": yaml_format.decode,
    "text/x-yaml": yaml_format.decode,
}
_UTF8_CHARSETS = frozenset(("utf-8", "utf8", "us-ascii", "ascii"))
# One parameter: a token name, then a token or a quoted string (RFC 9110 §5.6.6).
_PARAMETER = re.compile(r'\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;"]*?)\s*(?:;|$)')
_QUOTED_PAIR = re.compile(r"\\(.)")


def decode_beacons(body: bytes, content_type: str | None, limits: Limits) -> list[dict[str, Any]]:
    """The events in a beacon body sent as ``content_type``; an InputError if refused."""
    return decoder_for(content_type)(body, limits)


@lru_cache(maxsize=64)
def decoder_for(content_type: str | None) -> Decoder:
    """The decoder for a Content-Type header value (JSON when absent); UnsupportedMedia if none."""
    if not content_type or not content_type.strip():
        return json_format.decode
    media_type, params = parse_media_type(content_type)
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _UTF8_CHARSETS:
        raise UnsupportedMedia(f"charset {charset[:32]!r} is not supported; send UTF-8")
    if media_type == "text/plain" and "version" in params:
        return prometheus.decode  # what Prometheus exporters and scrapers send
    decoder = _DECODERS.get(media_type)
    if decoder is None and media_type.startswith("application/") and media_type.endswith("+json"):
        decoder = json_format.decode
    if decoder is None:
        raise UnsupportedMedia(
            f"content type {content_type[:64]!r} is not supported; use one of: "
            f"{', '.join(ACCEPTED)}"
        )
    return decoder


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``"Text/Plain; Version=0.0.4"`` → ``("text/plain", {"version": "0.0.4"})``.

    Type and parameter names are lower-cased; quoted values are unquoted; a malformed
    parameter is skipped, as browsers and aiohttp do.
    """
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAMETER.match(rest, pos)
        if match is None:
            end = rest.find(";", pos)
            pos = len(rest) if end < 0 else end + 1
            continue
        name, raw = match[1].lower(), match[2]
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params.setdefault(name, raw)
        pos = match.end()
    return media_type.strip().lower(), params
