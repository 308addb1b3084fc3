"""lz-string's base64 form (``compressToBase64``): what old posthog-js sends as ``lz64``.

Written here rather than taken from the ``lzstring`` package because a decoder facing the
network must stop at a cap: lz-string expands quadratically (a few KiB of input can name
gigabytes), and the package decodes without limit and raises arbitrary errors on bad input.
This one produces at most ``cap`` UTF-16 code units and raises only BadRequest or
PayloadTooLarge.

The format: base64 text whose bits, read most significant first, are LZW codes of growing
width. Each code's own bits come least significant first. Codes 0 and 1 carry an 8- or 16-bit
literal, 2 ends the stream, and 3 and up name dictionary entries.
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from ..errors import BadRequest, PayloadTooLarge
from .limits import human_size

_LITERAL_8, _LITERAL_16, _END = 0, 1, 2


def decompress(text: bytes, cap: int) -> bytes:
    """The UTF-8 text that lz-string base64 ``text`` encodes; InputError if bad or over ``cap``."""
    bits = _bits(text)
    units = _decode(bits, cap)
    try:
        # JavaScript strings are UTF-16: a character outside the BMP arrives as two surrogates.
        return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le").encode("utf-8")
    except UnicodeError as exc:
        raise BadRequest("lz64 data decodes to text with a lone UTF-16 surrogate") from exc


def _bits(text: bytes) -> str:
    """The payload's bits as a string of ``0``/``1``, most significant bit first."""
    compact = b"".join(text.split()).rstrip(b"=")
    # lz-string pads to a multiple of 4 with "=" even after a lone last character, which
    # standard base64 cannot express; zero bits ("A") past the end-of-stream code are unread.
    compact += b"A" * (-len(compact) % 4)
    try:
        raw = b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise BadRequest(f"lz64 data is not valid base64: {exc}") from exc
    if not raw:
        raise BadRequest("lz64 data is empty")
    return bin(int.from_bytes(raw, "big"))[2:].zfill(len(raw) * 8)


def _decode(bits: str, cap: int) -> str:
    """The string the LZW codes in ``bits`` spell, at most ``cap`` characters long."""
    total = len(bits)
    pos = 0

    def read(width: int) -> int:
        nonlocal pos
        end = pos + width
        if end > total:
            raise BadRequest("lz64 data is truncated")
        value = int(bits[pos:end][::-1], 2)  # a code's bits come least significant first
        pos = end
        return value

    first = read(2)
    if first == _END:
        raise BadRequest("lz64 data is empty")
    if first not in (_LITERAL_8, _LITERAL_16):
        raise BadRequest("lz64 data does not start with a literal")
    word = chr(read(8 if first == _LITERAL_8 else 16))
    dictionary = ["", "", "", word]  # codes 0-2 are reserved
    out = [word]
    size = 1
    width = 3
    enlarge_in = 4
    while True:
        code = read(width)
        if code == _END:
            return "".join(out)
        if code in (_LITERAL_8, _LITERAL_16):
            dictionary.append(chr(read(8 if code == _LITERAL_8 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
            if enlarge_in == 0:
                enlarge_in = 1 << width
                width += 1
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = word + word[0]  # the entry being defined by this very code (LZW's KwKwK)
        else:
            raise BadRequest(f"lz64 data names dictionary entry {code} before it exists")
        size += len(entry)
        if size > cap:
            raise PayloadTooLarge(f"lz64 data decompresses to more than {human_size(cap)}")
        out.append(entry)
        dictionary.append(word + entry[0])
        word = entry
        enlarge_in -= 1
        if enlarge_in == 0:
            enlarge_in = 1 << width
            width += 1
