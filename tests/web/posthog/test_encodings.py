"""Capture v0 bodies as posthog-js and other clients send them, by hand, one encoding each."""

from __future__ import annotations

import base64
import gzip
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
import zstandard
from capture_support import TOKEN, Running, StartRouter
from lzstring import LZString

from router.event import Event

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEXT = {"Content-Type": "text/plain"}


def js_event(i: int = 0, **extra: Any) -> dict[str, Any]:
    """An event as posthog-js builds it: distinct id and token inside properties."""
    event = {
        "event": "$pageview",
        "uuid": str(uuid.uuid4()),
        "timestamp": "2026-11-28T09:30:00.000Z",
        "properties": {
            "distinct_id": f"visitor-{i}",
            "token": TOKEN,
            "$current_url": "https://app.example.com/docs?q=a+b",
            "$lib": "web",
            "text": "café ☕ 😀",
        },
    }
    event.update(extra)
    return event


def as_kept(event: dict[str, Any]) -> dict[str, Any]:
    """The data the router keeps for a js_event: the token gone, the rest as sent."""
    properties = {k: v for k, v in event["properties"].items() if k != "token"}
    return {
        "distinct_id": event["properties"]["distinct_id"],
        "properties": properties,
        "timestamp": event["timestamp"],
    }


async def posted(router: Running, count: int, path: str, **request: Any) -> list[Event]:
    """POST (or GET, with ``method=``) a request; assert PostHog's answer; the delivered events."""
    method = request.pop("method", "POST")
    resp = await router.client.request(method, path, **request)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"status": 1}
    return await router.delivered(count)


def assert_kept(events: list[Event], sent: list[dict[str, Any]]) -> None:
    assert [(e.uuid, e.name, e.data) for e in events] == [
        (s["uuid"], s["event"], as_kept(s)) for s in sent
    ]


def lz64(value: Any) -> str:
    """``value`` as posthog-js sends it with ``compression=lz64``."""
    return LZString.compressToBase64(js_string(orjson.dumps(value).decode()))


def js_string(text: str) -> str:
    """``text`` as a JavaScript string: UTF-16 code units, so an emoji is two surrogates."""
    raw = text.encode("utf-16-le")
    return "".join(chr(int.from_bytes(raw[i : i + 2], "little")) for i in range(0, len(raw), 2))


async def test_lz64_form_as_old_posthog_js_sends_it(start_router: StartRouter):
    router = await start_router()
    sent = [js_event(0), js_event(1)]
    body = urlencode({"data": lz64(sent)})
    events = await posted(router, 2, "/e/?compression=lz64&ver=1.50.0", data=body, headers=FORM)
    assert_kept(events, sent)


async def test_lz64_whose_plus_signs_a_form_decoded_as_spaces_is_repaired(
    start_router: StartRouter,
):
    router = await start_router()
    sent = next(s for s in ([js_event(i)] for i in range(200)) if "+" in lz64(s))
    body = "data=" + lz64(sent)  # not percent-encoded: "+" reads as a space in a form
    events = await posted(router, 1, "/e/", data=body + "&compression=lz64", headers=FORM)
    assert_kept(events, sent)


async def test_base64_form_data_without_a_hint(start_router: StartRouter):
    router = await start_router()
    sent = [js_event()]
    body = urlencode({"data": base64.b64encode(orjson.dumps(sent)).decode()})
    assert_kept(await posted(router, 1, "/e/", data=body, headers=FORM), sent)


async def test_base64_body_with_compression_base64(start_router: StartRouter):
    router = await start_router()
    sent = [js_event()]
    body = base64.b64encode(orjson.dumps(sent))
    events = await posted(router, 1, "/i/v0/e/?compression=base64", data=body, headers=TEXT)
    assert_kept(events, sent)


@pytest.mark.parametrize("encode", [quote, lambda text: text], ids=["escaped", "raw-plus"])
async def test_get_with_base64_data_in_the_query(start_router: StartRouter, encode):
    router = await start_router()
    sent = next(s for s in (js_event(i) for i in range(200)) if b"+" in _b64(s))
    query = "data=" + encode(_b64(sent).decode())
    assert_kept(await posted(router, 1, f"/e/?{query}", method="GET"), [sent])


async def test_get_with_json_data_in_the_query(start_router: StartRouter):
    router = await start_router()
    sent = js_event()
    query = urlencode({"data": orjson.dumps(sent).decode(), "ip": "1", "_": "1764322200000"})
    assert_kept(await posted(router, 1, f"/capture?{query}", method="GET"), [sent])


async def test_gzip_recognised_by_its_magic_bytes_without_header_or_hint(
    start_router: StartRouter,
):
    router = await start_router()
    sent = [js_event(0), js_event(1)]
    body = gzip.compress(orjson.dumps(sent))
    assert_kept(await posted(router, 2, "/i/v0/e/", data=body, headers=TEXT), sent)


async def test_gzip_js_hint_as_posthog_js_sends_it(start_router: StartRouter):
    router = await start_router()
    sent = [js_event()]
    body = gzip.compress(orjson.dumps(sent))
    path = "/e/?ip=0&_=1764322200000&ver=1.200.0&compression=gzip-js"
    assert_kept(await posted(router, 1, path, data=body, headers=TEXT), sent)


async def test_gzip_content_encoding_header(start_router: StartRouter):
    router = await start_router()
    sent = {"api_key": TOKEN, "batch": [js_event()]}
    body = gzip.compress(orjson.dumps(sent))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert_kept(await posted(router, 1, "/batch", data=body, headers=headers), sent["batch"])


async def test_zstd_content_encoding_header(start_router: StartRouter):
    # posthog-python and posthog-node may compress with zstd; decoded under the same cap.
    router = await start_router()
    sent = {"api_key": TOKEN, "batch": [js_event(0), js_event(1)]}
    body = zstandard.ZstdCompressor().compress(orjson.dumps(sent))
    headers = {"Content-Type": "application/json", "Content-Encoding": "zstd"}
    assert_kept(await posted(router, 2, "/batch/", data=body, headers=headers), sent["batch"])


async def test_beacon_1_is_answered_204_with_no_body(start_router: StartRouter):
    router = await start_router()
    sent = [js_event()]
    resp = await router.client.post("/e/?beacon=1", data=orjson.dumps(sent), headers=TEXT)
    assert resp.status == 204
    assert await resp.read() == b""
    assert_kept(await router.delivered(1), sent)


async def test_single_event_with_api_key_and_dollar_distinct_id(start_router: StartRouter):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    sent = {"api_key": TOKEN, "event": "signed up", "$distinct_id": 23, "properties": {"a": 1}}
    [event] = await posted(router, 1, "/capture/", json=sent)
    assert (event.name, event.data) == ("signed up", {"distinct_id": "23", "properties": {"a": 1}})


@pytest.mark.parametrize(
    ("distinct_id", "kept"),
    [("user-1", "user-1"), (23, "23"), (23.5, "23.5"), ({"b": 1, "a": [2]}, '{"a":[2],"b":1}')],
)
async def test_distinct_ids_are_strings_as_posthog_makes_them(
    start_router: StartRouter, distinct_id: Any, kept: str
):
    router = await start_router()
    [event] = await posted(router, 1, "/e", json={"event": "e", "distinct_id": distinct_id})
    assert event.data["distinct_id"] == kept


async def test_engage_without_an_event_name_is_an_identify(start_router: StartRouter):
    router = await start_router()
    body = {"token": TOKEN, "distinct_id": "user-1", "$set": {"plan": "pro"}}
    [event] = await posted(router, 1, "/engage/", json=body)
    assert event.name == "$identify"
    assert event.data == {"distinct_id": "user-1", "properties": {}, "$set": {"plan": "pro"}}


async def test_person_updates_in_properties_and_on_top_are_merged_on_top(
    start_router: StartRouter,
):
    router = await start_router()
    body = {
        "event": "$identify",
        "distinct_id": "user-1",
        "$set": {"plan": "free", "seats": 3},
        "properties": {"$set": {"plan": "pro"}, "$set_once": {"first": "x"}, "k": "v"},
    }
    [event] = await posted(router, 1, "/e/", json=body)
    assert event.data == {
        "distinct_id": "user-1",
        "properties": {"k": "v"},
        "$set": {"plan": "pro", "seats": 3},
        "$set_once": {"first": "x"},
    }


async def test_an_offset_instead_of_a_timestamp_dates_the_event_that_long_ago(
    start_router: StartRouter,
):
    router = await start_router()
    before = datetime.now(UTC)
    [event] = await posted(
        router, 1, "/e/", json=[{**js_event(), "timestamp": None, "offset": 60_000}]
    )
    when = datetime.fromisoformat(event.data["timestamp"])
    received = datetime.fromisoformat(event.received_at)
    assert when == received - timedelta(minutes=1)
    assert received >= before - timedelta(milliseconds=1)


async def test_token_and_client_ip_are_written_nowhere(start_router: StartRouter, tmp_path):
    router = await start_router(backends=False)
    sent = js_event()
    sent["properties"].update({"$ip": "203.0.113.9", "$token": TOKEN})
    await posted(router, 0, "/e/", json=[sent], headers={"X-Forwarded-For": "198.51.100.7"})
    [row] = sqlite3.connect(tmp_path / "spool.db").execute("SELECT body FROM events").fetchall()
    properties = orjson.loads(row[0])["data"]["properties"]
    private = ("token", "$token", "$ip")
    assert properties == {k: v for k, v in sent["properties"].items() if k not in private}
    for path in tmp_path.iterdir():
        stored = path.read_bytes()
        for secret in (TOKEN.encode(), b"203.0.113.9", b"198.51.100.7", b"127.0.0.1"):
            assert secret not in stored, (path.name, secret)


async def test_events_are_durable_in_the_spool_before_the_answer(
    start_router: StartRouter, tmp_path
):
    router = await start_router(backends=False)
    sent = [js_event(0), js_event(1)]
    await posted(router, 0, "/e/", json=sent)
    rows = sqlite3.connect(tmp_path / "spool.db").execute("SELECT body FROM events").fetchall()
    kept = [orjson.loads(row[0]) for row in rows]
    assert [(k["uuid"], k["source"], k["event"]) for k in kept] == [
        (s["uuid"], "posthog", "$pageview") for s in sent
    ]
    assert TOKEN.encode() not in (tmp_path / "spool.db").read_bytes()


async def test_the_global_pipeline_runs_on_every_event(start_router: StartRouter):
    router = await start_router(
        pipeline="[{type: opt_out}, {type: drop, fields: [properties.text]}]"
    )
    kept, opted_out = js_event(0), js_event(1)
    await posted(router, 0, "/e/", json=[opted_out], headers={"DNT": "1"})
    [event] = await posted(router, 1, "/e/", json=[kept])
    assert event.uuid == kept["uuid"]
    assert "text" not in event.data["properties"]
    assert router.metric("received", "posthog") == 2
    assert router.metric("accepted", "posthog") == 1


V0_PATHS = ["/capture", "/batch", "/e", "/i/v0/e", "/track", "/engage"]


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("path", V0_PATHS)
async def test_every_v0_path_takes_get_post_and_options(
    start_router: StartRouter, path: str, slash: str
):
    router = await start_router()
    url = path + slash
    first, second = js_event(0), js_event(1)
    await posted(router, 1, url, json=first)
    await posted(
        router, 2, f"{url}?{urlencode({'data': orjson.dumps(second).decode()})}", method="GET"
    )
    options = await router.client.options(url)
    assert options.status == 204
    assert options.headers["Allow"] == "GET, POST, OPTIONS"
    assert [e.uuid for e in router.backend.events] == [first["uuid"], second["uuid"]]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405_json(start_router: StartRouter, method: str):
    router = await start_router()
    resp = await router.client.request(method, "/batch/")
    assert resp.status == 405
    assert (await resp.json())["error"] == "method_not_allowed"


def _b64(value: Any) -> bytes:
    return base64.b64encode(orjson.dumps(value))
