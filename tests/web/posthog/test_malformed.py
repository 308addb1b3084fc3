"""Bad capture requests: each a clear 4xx JSON answer, never a 5xx, and nothing stored."""

from __future__ import annotations

import base64
import contextlib
import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from capture_support import StartRouter
from hypothesis import given, settings
from hypothesis import strategies as st
from lzstring import LZString

from router.errors import InputError
from router.ingest import Limits
from router.ingest.posthog import decode_v0, decode_v1
from router.ingest.posthog_payload import COMPRESSIONS

OK = {"event": "e", "distinct_id": "u"}
FORM = "application/x-www-form-urlencoded"
SMALL = "{max_body: 4KiB, max_decompressed: 64KiB, max_events: 5, max_depth: 8}"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# (name, method, path, body, content type, extra headers, status, words the detail must hold)
CASES: list[tuple[str, str, str, bytes, str | None, dict[str, str], int, str]] = [
    ("empty body", "POST", "/e/", b"", None, {}, 400, "no events"),
    ("get without data", "GET", "/e/", b"", None, {}, 400, "no events"),
    ("not json", "POST", "/e/", b"{nope", "application/json", {}, 400, "not valid JSON"),
    ("bad utf-8", "POST", "/e/", b'{"event": "\xff"}', None, {}, 400, "not valid JSON"),
    ("a number", "POST", "/e/", b"42", None, {}, 400, "got a number"),
    ("empty array", "POST", "/e/", b"[]", None, {}, 400, "empty array"),
    ("array of numbers", "POST", "/e/", b"[1]", None, {}, 400, "item 0 of the array"),
    ("batch not array", "POST", "/batch/", b'{"batch": "x"}', None, {}, 400, "`batch` must"),
    ("empty batch", "POST", "/batch/", b'{"batch": []}', None, {}, 400, "`batch` is empty"),
    ("batch of numbers", "POST", "/batch/", b'{"batch": [1]}', None, {}, 400, "event 0 of"),
    ("no event name", "POST", "/e/", b'{"distinct_id": "u"}', None, {}, 400, "`event`"),
    (
        "event name a number",
        "POST",
        "/e/",
        b'{"event": 1, "distinct_id": "u"}',
        None,
        {},
        400,
        "`event`",
    ),
    ("no distinct id", "POST", "/e/", b'{"event": "e"}', None, {}, 400, "`distinct_id`"),
    (
        "empty distinct id",
        "POST",
        "/e/",
        b'{"event": "e", "distinct_id": " "}',
        None,
        {},
        400,
        "`distinct_id`",
    ),
    (
        "properties a list",
        "POST",
        "/e/",
        orjson.dumps({**OK, "properties": []}),
        None,
        {},
        400,
        "`properties` must be an object",
    ),
    (
        "timestamp a number",
        "POST",
        "/e/",
        orjson.dumps({**OK, "timestamp": 1}),
        None,
        {},
        400,
        "`timestamp`",
    ),
    (
        "$set a string",
        "POST",
        "/e/",
        orjson.dumps({**OK, "$set": "x"}),
        None,
        {},
        400,
        "`$set` must be an object",
    ),
    ("form without data", "POST", "/e/", b"compression=lz64", FORM, {}, 400, "no data= field"),
    ("form bad utf-8", "POST", "/e/", b"data=\xff", FORM, {}, 400, "not valid UTF-8"),
    (
        "gzip hint, not gzip",
        "POST",
        "/e/?compression=gzip-js",
        b"hello",
        None,
        {},
        400,
        "not valid gzip",
    ),
    (
        "truncated gzip",
        "POST",
        "/e/",
        gzip.compress(orjson.dumps(OK))[:-9],
        None,
        {},
        400,
        "truncated",
    ),
    ("lz64 not base64", "POST", "/e/?compression=lz64", b"@@@@", None, {}, 400, "not valid base64"),
    (
        "lz64 truncated",
        "POST",
        "/e/?compression=lz64",
        LZString.compressToBase64(orjson.dumps(OK).decode())[:6].encode(),
        None,
        {},
        400,
        "lz64",
    ),
    (
        "base64 hint, not base64",
        "POST",
        "/e/?compression=base64",
        b"%%%%",
        None,
        {},
        400,
        "not valid base64",
    ),
    (
        "unknown content encoding",
        "POST",
        "/e/",
        orjson.dumps(OK),
        None,
        {"Content-Encoding": "br"},
        415,
        "content encoding",
    ),
    (
        "too many events",
        "POST",
        "/batch/",
        orjson.dumps({"batch": [OK] * 6}),
        None,
        {},
        400,
        "at most 5",
    ),
    (
        "too deep",
        "POST",
        "/e/",
        orjson.dumps({**OK, "properties": _nested(9)}),
        None,
        {},
        400,
        "nested more than 8",
    ),
    (
        "body over max_body",
        "POST",
        "/e/",
        orjson.dumps({**OK, "pad": "x" * 5000}),
        None,
        {},
        413,
        "at most 4 KiB",
    ),
    (
        "gzip bomb",
        "POST",
        "/e/",
        gzip.compress(b" " * 100_000 + orjson.dumps(OK)),
        None,
        {},
        413,
        "decompresses to more than 64 KiB",
    ),
    (
        "lz64 bomb",
        "POST",
        "/e/?compression=lz64",
        LZString.compressToBase64(" " * 100_000 + orjson.dumps(OK).decode()).encode(),
        None,
        {},
        413,
        "decompresses to more than 64 KiB",
    ),
    ("v1 not json", "POST", "/i/v1/analytics/events", b"nope", None, {}, 400, "not valid JSON"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "headers", "status", "detail"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_a_bad_request_gets_a_clear_4xx(
    start_router: StartRouter,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    headers: dict[str, str],
    status: int,
    detail: str,
):
    router = await start_router(server=SMALL)
    if content_type:
        headers = {**headers, "Content-Type": content_type}
    resp = await router.client.request(method, path, data=body, headers=headers)
    assert resp.status == status, await resp.text()
    answer = await resp.json()
    assert set(answer) == {"error", "detail"}
    assert detail in answer["detail"]
    assert router.metric("rejected", "posthog", answer["error"]) == 1
    assert router.metric("received", "posthog") == 0


def _valid_bodies() -> st.SearchStrategy[bytes]:
    events = st.lists(
        st.fixed_dictionaries(
            {
                "event": st.text(max_size=8),
                "distinct_id": st.one_of(st.text(), st.integers(-(2**53), 2**53)),
            },
            optional={
                "properties": st.dictionaries(
                    st.text(max_size=5), st.integers(-(2**53), 2**53), max_size=3
                ),
                "timestamp": st.text(max_size=30),
                "uuid": st.text(max_size=40),
            },
        ),
        min_size=1,
        max_size=3,
    )
    return events.map(orjson.dumps)


_ENCODE = {
    "none": lambda b: b,
    "gzip": gzip.compress,
    "base64": base64.b64encode,
    "lz64": lambda b: LZString.compressToBase64(b.decode()).encode(),
}


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(st.binary(max_size=300), _valid_bodies()),
    encoding=st.sampled_from(sorted(_ENCODE)),
    cut=st.integers(min_value=0, max_value=40),
    hint=st.sampled_from([None, "", "nonsense", *COMPRESSIONS]),
    form=st.booleans(),
    engage=st.booleans(),
)
def test_any_body_decodes_or_raises_only_input_errors(
    body: bytes, encoding: str, cut: int, hint: str | None, form: bool, engage: bool
):
    payload = _ENCODE[encoding](body) if encoding != "lz64" or _is_text(body) else body
    payload = payload[: len(payload) - cut] if cut else payload  # truncated: a common failure
    query = {"compression": hint} if hint is not None else {}
    content_type = FORM if form else "text/plain"
    if form:
        payload = b"data=" + payload
    limits = Limits(max_decompressed=64 * 1024, max_events=5, max_depth=8)
    try:
        capture = decode_v0(
            payload,
            query=query,
            content_type=content_type,
            engage=engage,
            now=datetime.now(UTC),
            limits=limits,
        )
    except InputError:
        return
    for event in capture.events:
        assert isinstance(event.data["distinct_id"], str) and event.data["distinct_id"].strip()
        assert isinstance(event.data["properties"], dict)
        assert "token" not in event.data["properties"]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "batch",
                            "event",
                            "uuid",
                            "distinct_id",
                            "timestamp",
                            "properties",
                            "options",
                        ]
                    ),
                    inner,
                    max_size=6,
                )
            ),
            max_leaves=20,
        ).map(orjson.dumps),
    )
)
def test_any_v1_body_decodes_or_raises_only_input_errors(body: bytes):
    with contextlib.suppress(InputError):
        decode_v1(body, sdk_info="x/1", limits=Limits(max_events=5, max_depth=8))


def _is_text(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
