"""Fuzzing: whatever the bytes and the content type, ingest returns events or an InputError."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import zlib
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RouterProcess, free_port

from router.errors import InputError
from router.ingest import Limits, decode_beacons, decompress, parse_media_type

CONTENT_TYPES = [
    None,
    "application/json",
    "text/plain;charset=UTF-8",
    "application/vnd.example+json",
    "text/plain; version=0.0.4",
    "application/openmetrics-text",
    "application/x-www-form-urlencoded",
    "application/yaml",
]
LIMITS = Limits(max_events=20, max_depth=8, max_fields=50, max_aliases=10)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that are mostly syntax of the formats under test, so the fuzzer gets past the first
# character more often than with uniform random bytes.
SYNTAX = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"',
        b":",
        b",",
        b"=",
        b"&",
        b"%",
        b"#",
        b"\n",
        b" ",
        b"-",
        b"a",
        b"1",
        b"0.5",
        b"*a",
        b"&a",
        b"!!",
        b"<<",
        b"---",
        b"null",
        b"true",
        b"\xff",
        b"\\",
        b"e",
        b"NaN",
        b"# EOF",
        b'{le="1"}',
        b"x[]",
        b"[y]",
    ]
)
SYNTAX_BODIES = st.lists(SYNTAX, max_size=60).map(b"".join)
BODIES = st.one_of(st.binary(max_size=400), SYNTAX_BODIES)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def decode_or_refuse(body: bytes, content_type: str | None) -> list[dict[str, Any]] | None:
    """The events, checked to be what the spool can store; None when refused as it should be."""
    try:
        events = decode_beacons(body, content_type, LIMITS)
    except InputError as exc:
        assert exc.detail and 400 <= exc.status < 500
        return None
    assert type(events) is list and events and len(events) <= LIMITS.max_events
    assert all(type(event) is dict for event in events)
    orjson.dumps(events)  # every accepted event can be stored as JSON
    return events


@FUZZ
@given(body=BODIES, content_type=st.sampled_from(CONTENT_TYPES))
def test_any_bytes_with_any_supported_type_give_events_or_an_input_error(
    body: bytes, content_type: str | None
) -> None:
    decode_or_refuse(body, content_type)


@FUZZ
@given(body=st.binary(max_size=50), content_type=st.text(max_size=80))
def test_any_content_type_header_gives_events_or_an_input_error(
    body: bytes, content_type: str
) -> None:
    decode_or_refuse(body, content_type)


@FUZZ
@given(header=st.text(max_size=80))
def test_media_type_parser_accepts_any_header(header: str) -> None:
    media_type, params = parse_media_type(header)
    assert media_type == media_type.strip().lower()
    assert all(name == name.lower() for name in params)


@FUZZ
@given(data=st.binary(max_size=300), encoding=st.sampled_from(["gzip", "deflate"]))
def test_decompressing_any_bytes_gives_bytes_or_an_input_error(data: bytes, encoding: str) -> None:
    with contextlib.suppress(InputError):
        assert len(decompress(data, encoding, 1000)) <= 1000


@FUZZ
@given(payload=st.binary(max_size=2000), cut=st.integers(0, 2000))
def test_truncated_or_intact_gzip_never_escapes_as_another_error(payload: bytes, cut: int) -> None:
    packed = gzip.compress(payload)
    try:
        assert decompress(packed[:cut], "gzip", 10_000) == payload
    except InputError:
        assert cut < len(packed)
    packed_zlib = zlib.compress(payload)
    assert decompress(packed_zlib, "deflate", 10_000) == payload


@settings(FUZZ, max_examples=60)  # generating nested values is the slow part
@given(
    events=st.lists(
        st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5), min_size=1, max_size=5
    )
)
def test_valid_json_and_yaml_decode_to_exactly_what_was_sent(events: list[dict[str, Any]]) -> None:
    assert decode_or_refuse(orjson.dumps(events), "application/json") in (events, None)
    # Every scalar double-quoted (numbers as `!!int "1"`): plain scalars would be read by the
    # YAML 1.2 rules the router uses, while PyYAML writes them by YAML 1.1's.
    as_yaml = yaml.dump(events, Dumper=yaml.CSafeDumper, allow_unicode=True, default_style='"')
    assert decode_or_refuse(as_yaml.encode(), "application/yaml") in (events, None)


# -- over HTTP: a real router process, whatever the path, headers and body ---------------------

HTTP_CONFIG = """
spool: {path: ./spool.db}
backends:
  out: {type: file, path: ./out.jsonl}
"""
HTTP_PATHS = ["/beacon", "/ping", "/batch/", "/capture/", "/e/?compression=gzip-js",
              "/e/?compression=lz64", "/i/v0/e/?compression=base64", "/engage/",
              "/i/v1/analytics/events", "/track/?data=%7B"]
HTTP_ENCODINGS = [None, "gzip", "deflate", "br", "identity", "gzip, deflate", "x-unknown"]


def _packed(body: bytes, how: int) -> bytes:
    return (body, gzip.compress(body), zlib.compress(body), gzip.compress(body)[:-3])[how]


@pytest.fixture(scope="module")
def live_router(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz-http")
    (workdir / "router.yaml").write_text(HTTP_CONFIG)
    router = RouterProcess(str(workdir / "router.yaml"), free_port(), str(workdir))
    router.start()
    asyncio.run(router.wait_ready())
    yield router
    router.stop()


@settings(FUZZ, max_examples=200)
@given(body=BODIES, how=st.integers(0, 3), path=st.sampled_from(HTTP_PATHS),
       content_type=st.sampled_from([*CONTENT_TYPES, "text/plain", "multipart/form-data"]),
       encoding=st.sampled_from(HTTP_ENCODINGS))
def test_no_request_gets_a_5xx_over_http(live_router, body: bytes, how: int, path: str,
                                         content_type: str | None, encoding: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    conn = http.client.HTTPConnection("127.0.0.1", live_router.port, timeout=10)
    try:
        conn.request("POST", path, body=_packed(body, how), headers=headers)
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status < 500, (resp.status, path, headers)
