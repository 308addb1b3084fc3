"""Capture v1 (``/i/v1/analytics/events``) by hand: the exact answer, the event, Bearer auth."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
import pytest
from capture_support import TOKEN, StartRouter

V1 = "/i/v1/analytics/events"
SDK_HEADERS = {"Authorization": f"Bearer {TOKEN}", "PostHog-Sdk-Info": "posthog-go/1.6.0"}


def v1_event(**extra: Any) -> dict[str, Any]:
    event = {
        "event": "signed up",
        "uuid": str(uuid.uuid4()),
        "distinct_id": "user-1",
        "timestamp": "2026-11-28T09:30:00Z",
        "options": {},
        "properties": {"plan": "pro"},
    }
    event.update(extra)
    return event


async def test_each_event_is_answered_ok_by_its_uuid(start_router: StartRouter):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    batch = [v1_event(), v1_event(uuid=str(uuid.uuid4()).upper())]
    body = gzip.compress(orjson.dumps({"created_at": "2026-11-28T09:30:01Z", "batch": batch}))
    resp = await router.client.post(
        V1, data=body, headers={**SDK_HEADERS, "Content-Encoding": "gzip"}
    )
    assert resp.status == 200
    assert await resp.json() == {"results": {e["uuid"]: {"result": "ok"} for e in batch}}
    events = await router.delivered(2)
    assert [e.uuid for e in events] == [e["uuid"].lower() for e in batch]


async def test_options_session_and_sdk_info_go_back_into_properties(start_router: StartRouter):
    router = await start_router()
    sent = v1_event(
        session_id="s-1",
        window_id="w-1",
        options={"process_person_profile": False, "disable_skew_correction": True},
        properties={"plan": "pro", "$set": {"plan": "pro"}},
    )
    resp = await router.client.post(V1, json={"batch": [sent]}, headers=SDK_HEADERS)
    assert resp.status == 200
    [event] = await router.delivered(1)
    assert event.data == {
        "distinct_id": "user-1",
        "timestamp": "2026-11-28T09:30:00Z",
        "$set": {"plan": "pro"},
        "properties": {
            "plan": "pro",
            "$session_id": "s-1",
            "$window_id": "w-1",
            "$process_person_profile": False,
            "$ignore_sent_at": True,
            "$lib": "posthog-go",
            "$lib_version": "1.6.0",
        },
    }


async def test_events_dropped_by_the_pipeline_are_still_answered_ok(start_router: StartRouter):
    router = await start_router(pipeline="[{type: opt_out}]")
    sent = v1_event()
    resp = await router.client.post(V1, json={"batch": [sent]}, headers={"DNT": "1"})
    assert await resp.json() == {"results": {sent["uuid"]: {"result": "ok"}}}
    assert router.metric("accepted", "posthog") == 0


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "project token is required"),
        ("Basic dXNlcjpwdw==", 'must be "Bearer <project token>"'),
        ("Bearer phc_someone_else", "unknown project token"),
    ],
)
async def test_without_a_listed_bearer_token_v1_is_401(
    start_router: StartRouter, authorization: str | None, detail: str
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    headers = {"Authorization": authorization} if authorization else {}
    resp = await router.client.post(V1, json={"batch": [v1_event()]}, headers=headers)
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == "unauthorized" and detail in body["detail"]
    assert "phc_someone_else" not in body["detail"]
    assert router.backend.events == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ([v1_event()], "not an array"),
        ({"batch": []}, "`batch` is empty"),
        ({"batch": {}}, "`batch` must be an array"),
        ({"batch": [v1_event(uuid="nope")]}, "event 0: `uuid` is required"),
        ({"batch": [v1_event(uuid=None)]}, "event 0: `uuid` is required"),
        ({"batch": [v1_event(), v1_event(distinct_id=7)]}, "event 1: `distinct_id`"),
        ({"batch": [v1_event(distinct_id=" ")]}, "event 0: `distinct_id`"),
        ({"batch": [v1_event(timestamp=None)]}, "event 0: `timestamp` is required"),
        ({"batch": [v1_event(event="")]}, "event 0: `event`"),
        ({"batch": [v1_event(properties=[1])]}, "event 0: `properties` must be an object"),
        ({"batch": [v1_event(options="x")]}, "event 0: `options` must be an object"),
    ],
)
async def test_a_malformed_v1_batch_is_400_naming_the_problem(
    start_router: StartRouter, body: Any, detail: str
):
    router = await start_router()
    resp = await router.client.post(V1, json=body)
    assert resp.status == 400
    assert detail in (await resp.json())["detail"]
    assert router.backend.events == []


async def test_v1_takes_post_and_options_only(start_router: StartRouter):
    router = await start_router()
    options = await router.client.options(V1)
    assert (options.status, options.headers["Allow"]) == (204, "POST, OPTIONS")
    assert (await router.client.get(V1)).status == 405
