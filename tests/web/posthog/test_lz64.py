"""The capped lz-string decoder, checked against the ``lzstring`` package's encoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lzstring import LZString

from router.errors import BadRequest, InputError, PayloadTooLarge
from router.ingest.lz64 import decompress


def js_string(text: str) -> str:
    """``text`` as JavaScript holds it (UTF-16 code units), which is what lz-string encodes."""
    raw = text.encode("utf-16-le")
    return "".join(chr(int.from_bytes(raw[i : i + 2], "little")) for i in range(0, len(raw), 2))


def encode(text: str) -> bytes:
    return LZString.compressToBase64(js_string(text)).encode()


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_decodes_what_lz_string_encodes_including_emoji(text: str):
    assert decompress(encode(text), cap=10_000).decode("utf-8") == text


@pytest.mark.parametrize("text", ["a", "ab", "aaaaaaaaaaaaaaaa", "é" * 300, "😀" * 50, "{}" * 5000])
def test_decodes_edge_cases(text: str):
    assert decompress(encode(text), cap=1_000_000).decode("utf-8") == text


def test_stops_at_the_cap_long_before_a_bomb_is_unpacked():
    bomb = encode("A" * 500_000)
    assert len(bomb) < 5_000
    with pytest.raises(PayloadTooLarge, match="more than 64 KiB"):
        decompress(bomb, cap=64 * 1024)


def test_output_exactly_at_the_cap_is_accepted():
    assert len(decompress(encode("x" * 1000), cap=1000)) == 1000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"@@@@", "not valid base64"),
        (encode("hello world, hello world")[:5], "truncated"),
        (b"wA==", "does not start with a literal"),  # 0xC0: the first code says "entry 3"
    ],
)
def test_refuses_bad_input_with_a_clear_message(data: bytes, message: str):
    with pytest.raises(BadRequest, match=message):
        decompress(data, cap=1000)


def test_a_lone_surrogate_is_refused():
    data = LZString.compressToBase64("\ud83d!").encode()  # half of an emoji, then "!"
    with pytest.raises(BadRequest, match="lone UTF-16 surrogate"):
        decompress(data, cap=1000)


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=200)
    | st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=200
    ).map(str.encode)
)
def test_any_input_decodes_or_raises_an_input_error(data: bytes):
    with contextlib.suppress(InputError):
        decompress(data, cap=10_000)
