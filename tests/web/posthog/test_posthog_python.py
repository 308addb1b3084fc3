"""The official posthog-python SDK, pointed at a running router, in each of its capture modes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from capture_support import TOKEN, StartRouter, assert_delivered_as_sent, routes_used
from posthog import Posthog
from posthog.request import APIError

EXPLICIT_UUID = "0190f6d2-7c1e-7b3a-9f5e-1c2d3e4f5a6b"
PROPERTIES = {
    "plan": "pro",
    "seats": 12,
    "ratio": 0.25,
    "beta": True,
    "none": None,
    "text": "café ☕ 😀",
    "nested": {"list": [1, "two", {"three": 3}]},
}


class Sdk:
    """A posthog-python client run in a worker thread, recording what it queued and its errors."""

    def __init__(self, host: str, api_key: str = TOKEN, **options: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.errors: list[Exception] = []
        self.client = Posthog(
            api_key,
            host=host,
            on_error=lambda error, _batch: self.errors.append(error),
            before_send=self._record,
            **options,
        )

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(json.loads(json.dumps(message, default=str)))
        return message

    def send_the_usual(self) -> None:
        """A capture of every kind an app makes, then shutdown (which flushes)."""
        c = self.client
        c.capture("signed up", distinct_id="user-1", properties=PROPERTIES, uuid=EXPLICIT_UUID)
        c.capture(
            "page viewed",
            distinct_id=42,
            properties={"path": "/docs"},
            timestamp=datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
        )
        c.capture("grouped", distinct_id="user-1", groups={"company": "acme"})
        c.set(distinct_id="user-1", properties={"plan": "pro"})
        c.set_once(distinct_id="user-1", properties={"first_seen": "2026-01-01"})
        c.group_identify("company", "acme", {"employees": 40})
        c.alias("user-1", "user-1@example")
        c.shutdown()


@pytest.mark.parametrize(
    ("options", "route"),
    [
        ({"gzip": True}, "/batch/"),
        ({"gzip": True, "sync_mode": True}, "/batch/"),
        ({"gzip": True, "capture_mode": "v1"}, "/i/v1/analytics/events"),
        ({"capture_mode": "v1", "capture_compression": "deflate"}, "/i/v1/analytics/events"),
    ],
    ids=["batch-gzip", "batch-sync", "v1-gzip", "v1-deflate"],
)
async def test_every_event_reaches_the_backend_with_uuid_distinct_id_and_properties_intact(
    start_router: StartRouter, options: dict[str, Any], route: str
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    sdk = Sdk(router.url, **options)
    await asyncio.to_thread(sdk.send_the_usual)
    assert sdk.errors == []
    assert len(sdk.sent) == 7
    events = await router.delivered(len(sdk.sent))
    assert_delivered_as_sent(sdk.sent, events)
    assert next(e for e in events if e.uuid == EXPLICIT_UUID).data["properties"]["text"] == (
        "café ☕ 😀"
    )
    assert next(e for e in events if e.name == "page viewed").data["distinct_id"] == "42"
    metrics = await (await router.client.get("/metrics")).text()
    assert routes_used(metrics) == {route}
    assert router.metric("accepted", "posthog") == 7


async def test_batch_and_v1_modes_give_the_router_the_same_event(start_router: StartRouter):
    router = await start_router()
    for mode in ("v0", "v1"):
        sdk = Sdk(router.url, capture_mode=mode, gzip=True)
        for name in ("signed up", "$set"):
            sdk.client.capture(
                name,
                distinct_id="user-1",
                properties=PROPERTIES,
                timestamp="2026-11-28T09:30:00+00:00",
                uuid=str(uuid.uuid4()),
            )
        sdk.client.set(
            distinct_id="user-1", properties={"plan": "pro"}, timestamp="2026-11-28T09:30:00+00:00"
        )
        await asyncio.to_thread(sdk.client.shutdown)
        assert sdk.errors == []
    events = await router.delivered(6)
    v0, v1 = events[:3], events[3:]
    assert [(e.name, e.data) for e in v0] == [(e.name, e.data) for e in v1]


@pytest.mark.parametrize("mode", ["v0", "v1"])
async def test_an_unknown_project_token_gets_401_and_nothing_is_stored(
    start_router: StartRouter, mode: str
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    sdk = Sdk(router.url, api_key="phc_someone_else", capture_mode=mode, max_retries=0)
    sdk.client.capture("signed up", distinct_id="user-1")
    await asyncio.to_thread(sdk.client.shutdown)
    assert [getattr(e, "status", None) for e in sdk.errors] == [401]
    assert isinstance(sdk.errors[0], APIError)
    assert router.metric("rejected", "posthog", "unauthorized") == 1
    assert router.backend.events == []
