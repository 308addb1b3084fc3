"""Where a PostHog capture v0 request carries its events, and how they are wrapped.

posthog-js and the server SDKs send them as the body, as the ``data=`` field of a form or of the
query, plain or gzipped (by header, by ``compression=gzip|gzip-js``, or recognised by its magic
bytes), lz-string base64 (``compression=lz64``) or base64. :func:`events_payload` finds them,
:func:`unwrap` turns them into JSON text; :mod:`router.ingest.posthog` decodes that text.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import parse_qsl

from ..errors import BadRequest
from . import lz64
from .beacon import parse_media_type
from .body import decompress
from .limits import Limits

GZIP_MAGIC = b"\x1f\x8b\x08"
COMPRESSIONS = {
    "gzip": "gzip",
    "gzip-js": "gzip",
    "lz64": "lz64",
    "lz-string": "lz64",
    "base64": "base64",
    "b64": "base64",
}
"""``compression=`` values PostHog's SDKs send, and what each means here; others are ignored."""

_JSON_START = re.compile(rb"\s*[\[{]")
_BASE64 = re.compile(rb"\s*[A-Za-z0-9+/]+={0,2}\s*")
def events_payload(
    body: bytes, query: Mapping[str, str], content_type: str | None, limits: Limits
) -> tuple[bytes, str | None]:
    """The encoded events and their ``compression=`` hint, from a query, a form or the body."""
    compression = query.get("compression")
    data = query.get("data")
    if data:  # GET ?data=…, posthog-js's fallback; PostHog reads it before any body
        return _restore_plus(data).encode(), compression
    if not body:
        raise BadRequest("no events: the body is empty and there is no data= parameter")
    if content_type and _media_type(content_type) == "application/x-www-form-urlencoded":
        form = _form(body, limits)
        data = form.get("data")
        if not data:
            raise BadRequest("form body has no data= field; send the events as data=<JSON>")
        return _restore_plus(data).encode(), form.get("compression") or compression
    return body, compression


def _form(body: bytes, limits: Limits) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=limits.max_fields,
        )
    except UnicodeDecodeError as exc:
        raise BadRequest(f"form body is not valid UTF-8: {exc.reason}") from exc
    except ValueError as exc:  # parse_qsl's only other complaint: max_num_fields
        raise BadRequest(f"form body has more than {limits.max_fields} fields") from exc
    return dict(pairs)


def _restore_plus(data: str) -> str:
    """Base64 text whose ``+`` a form or query decoding turned into spaces, repaired."""
    return data if _JSON_START.match(data[:64].encode()) else data.replace(" ", "+")


def unwrap(payload: bytes, compression: str | None, limits: Limits) -> bytes:
    """JSON text from ``payload``: gunzipped, lz-string or base64 decoded, at most twice.

    The hint is only a hint, as in PostHog: posthog-js sometimes compresses without saying
    so, so gzip is also recognised by its magic bytes, and a payload that is visibly JSON
    is JSON whatever the hint says. Two steps cover base64-wrapped gzip and lz-string.
    """
    hint = COMPRESSIONS.get((compression or "").strip().lower())
    for _ in range(2):
        if _JSON_START.match(payload):
            return payload
        if payload.startswith(GZIP_MAGIC) or hint == "gzip":
            payload = decompress(payload, "gzip", limits.max_decompressed)
        elif hint == "lz64":
            payload = lz64.decompress(payload, limits.max_decompressed)
        elif hint == "base64":
            payload = _base64(payload)
        elif _BASE64.fullmatch(payload) and _is_encoded(guess := _base64(payload, guess=True)):
            payload = guess  # unannounced base64, as older posthog-js sends in data=
        else:
            break
        hint = None
    return payload


def _base64(payload: bytes, *, guess: bool = False) -> bytes:
    compact = b"".join(payload.split())
    try:
        return b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except binascii.Error as exc:
        if guess:
            return b""
        raise BadRequest(f"data is not valid base64: {exc}") from exc


def _is_encoded(payload: bytes) -> bool:
    """Whether ``payload`` is JSON or gzip: what a base64 wrapping may hide."""
    return payload.startswith(GZIP_MAGIC) or _JSON_START.match(payload) is not None


def is_object(text: bytes) -> bool:
    start = _JSON_START.match(text)
    return start is not None and start[0].endswith(b"{")


@lru_cache(maxsize=64)
def _media_type(content_type: str) -> str:
    # Parsed once per distinct header value: an SDK sends the same one with every request.
    return parse_media_type(content_type)[0]
