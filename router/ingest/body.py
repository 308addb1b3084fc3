"""Reading a request body within the limits: a cap on the wire, then bounded decompression.

The server should run with ``auto_decompress=False`` (``web.AppRunner(app,
auto_decompress=False)``) so the bytes read here are the bytes on the wire and every cap below
applies as documented, whatever the aiohttp version. If aiohttp decompressed the body already
(its default), :func:`read_body` still holds both caps, using the compressed-byte count aiohttp
keeps on the stream.
"""

from __future__ import annotations

import zlib

from aiohttp import StreamReader, hdrs, web

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from .limits import Limits, human_size
from .zstd import decompress_zstd

ENCODINGS = ("gzip", "x-gzip", "deflate", "zstd", "identity")
"""The ``Content-Encoding`` values the router reads."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer required
_ZLIB_WBITS = zlib.MAX_WBITS  # RFC 1950 zlib wrapper
_RAW_WBITS = -zlib.MAX_WBITS  # bare RFC 1951 stream, as some clients send for "deflate"
_STEP = 256 * 1024  # decompressed bytes produced per zlib call


async def read_body(request: web.Request, limits: Limits) -> bytes:
    """The request body, decompressed; PayloadTooLarge, UnsupportedMedia or BadRequest if not."""
    header = request.headers.get(hdrs.CONTENT_ENCODING)
    encoding = content_encoding(header) if header else None  # (most beacons: none, no call)
    length = request.content_length
    if length is not None and length > limits.max_body:
        raise PayloadTooLarge(
            f"body is {length} bytes, at most {human_size(limits.max_body)} accepted"
        )
    stream = request.content
    # aiohttp sets this counter only when it decompresses the body itself (gzip, deflate).
    if getattr(stream, "total_compressed_bytes", None) is not None:
        return await _read_decoded_by_aiohttp(stream, limits)
    if stream.is_eof():  # the whole body came with the headers (most beacons): no await
        raw = stream.read_nowait()
        if len(raw) > limits.max_body:
            raise PayloadTooLarge(f"body is over {human_size(limits.max_body)}")
    else:
        raw = await _read_capped(stream, limits.max_body)
    if encoding is None or not raw:
        return raw
    return decompress(raw, encoding, limits.max_decompressed)


def content_encoding(header: str | None) -> str | None:
    """``gzip``, ``deflate`` or ``zstd`` from a Content-Encoding header; None for identity."""
    if not header:
        return None
    codings = [c for c in header.lower().replace(" ", "").split(",") if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ENCODINGS:
        return "gzip" if codings[0] == "x-gzip" else codings[0]
    raise UnsupportedMedia(
        f"content encoding {header[:64]!r} is not supported; use one of: {', '.join(ENCODINGS)}"
    )


def decompress(data: bytes, encoding: str, cap: int) -> bytes:
    """``data`` decoded from gzip, deflate or zstd without ever producing more than ``cap``
    bytes."""
    if encoding == "zstd":
        return decompress_zstd(data, cap)
    if encoding == "gzip":
        wbits = _GZIP_WBITS
    else:
        wbits = _ZLIB_WBITS if _has_zlib_header(data) else _RAW_WBITS
    parts: list[bytes] = []
    total = 0
    while True:
        decoder = zlib.decompressobj(wbits)
        pending = data
        while not decoder.eof:
            # zlib never returns more than _STEP bytes per call, so a zip bomb is stopped
            # after at most cap + _STEP bytes, however far it would expand.
            try:
                part = decoder.decompress(pending, _STEP)
            except zlib.error as exc:
                reason = str(exc).rpartition(": ")[2]  # drop zlib's "Error -3 while …: "
                raise BadRequest(f"body is not valid {encoding}: {reason}") from exc
            total += len(part)
            if total > cap:
                raise PayloadTooLarge(f"body decompresses to more than {human_size(cap)}")
            parts.append(part)
            pending = decoder.unconsumed_tail
            if not pending and len(part) < _STEP:
                break  # all input consumed and no output held back: done, or truncated
        if not decoder.eof:
            raise BadRequest(f"body is not valid {encoding}: the compressed data is truncated")
        data = decoder.unused_data
        if not data:
            return b"".join(parts)
        if wbits != _GZIP_WBITS:
            raise BadRequest(f"body is not valid {encoding}: bytes follow the compressed data")
        # A gzip body may hold several members back to back (RFC 1952 §2.2): read the next.


def _has_zlib_header(data: bytes) -> bool:
    # RFC 1950 §2.2: CM (low nibble of CMF) is 8 and CMF·256 + FLG is a multiple of 31.
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


async def _read_capped(stream: StreamReader, cap: int) -> bytes:
    """Everything left on ``stream``, or PayloadTooLarge as soon as it passes ``cap`` bytes."""
    parts: list[bytes] = []
    size = 0
    try:
        while part := await stream.readany():
            size += len(part)
            if size > cap:
                raise PayloadTooLarge(f"body is over {human_size(cap)}")
            parts.append(part)
    except (web.RequestPayloadError, ConnectionResetError) as exc:
        raise BadRequest(f"body could not be read: {exc}") from exc
    return b"".join(parts)


async def _read_decoded_by_aiohttp(stream: StreamReader, limits: Limits) -> bytes:
    """The body aiohttp already decompressed, within both the wire and the decompressed cap."""
    parts: list[bytes] = []
    size = 0
    try:
        while part := await stream.readany():
            size += len(part)
            if (stream.total_compressed_bytes or 0) > limits.max_body:
                raise PayloadTooLarge(f"body is over {human_size(limits.max_body)}")
            if size > limits.max_decompressed:
                raise PayloadTooLarge(
                    f"body decompresses to more than {human_size(limits.max_decompressed)}"
                )
            parts.append(part)
    except (web.RequestPayloadError, ConnectionResetError) as exc:
        raise BadRequest(f"body is not valid compressed data: {exc}") from exc
    return b"".join(parts)
