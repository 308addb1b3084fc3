"""``Content-Encoding: zstd`` (RFC 8878), as PostHog's SDKs and modern clients may send it.

Decoded under the same cap as gzip: never more than ``cap`` bytes are produced, however far a
body would expand. Frames may follow each other (each is a complete zstd stream); a truncated
frame, or bytes after the last one that are no frame, is a 400.
"""

from __future__ import annotations

import io

import zstandard

from ..errors import BadRequest, PayloadTooLarge
from .limits import human_size

_STEP = 256 * 1024  # decompressed bytes read per call
_MAX_WINDOW = 8 * 1024 * 1024  # RFC 8878 §3.1.1.1.2: what a decoder must support at least


def decompress_zstd(data: bytes, cap: int) -> bytes:
    """``data`` decoded from zstd, or PayloadTooLarge past ``cap`` bytes, or BadRequest."""
    decoder = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
    # First pass: the streaming reader stops at the cap whatever the frames declare…
    total = 0
    try:
        with decoder.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            while part := reader.read(_STEP):
                total += len(part)
                if total > cap:
                    raise PayloadTooLarge(f"body decompresses to more than {human_size(cap)}")
        # …but it takes a truncated frame for the end of input. The one-shot decoder tells the
        # two apart (its eof), and its output is now known to fit under the cap.
        parts: list[bytes] = []
        pending = data
        while pending:
            frame = decoder.decompressobj()
            parts.append(frame.decompress(pending))
            if not frame.eof:
                raise BadRequest("body is not valid zstd: the compressed data is truncated")
            pending = frame.unused_data
    except zstandard.ZstdError as exc:
        reason = str(exc).removeprefix("zstd decompress error: ")
        raise BadRequest(f"body is not valid zstd: {reason}") from exc
    return b"".join(parts)
