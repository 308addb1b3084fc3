"""The Segment backend against a local Segment HTTP Tracking API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_segment import WRITE_KEY, FakeSegment

from router.event import Event

pytestmark = pytest.mark.timeout(30)


def config(url: str, **extra: Any) -> str:
    options = {"host": url, "write_key": WRITE_KEY, **extra}
    lines = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in options.items())
    return f"backends:\n  segment:\n    type: segment{lines}\n"


@pytest.fixture
async def fake(serve) -> FakeSegment:
    fake = FakeSegment()
    fake.url = await serve(fake)
    return fake


async def test_beacon_becomes_a_track_call_keyed_by_message_id(fake, build, beacons):
    backend = build(config(fake.url))
    (event,) = beacons(1)

    assert (await backend.send([event])).ok

    (request,) = fake.requests
    assert request.path == "/v1/batch"
    assert set(request.body) == {"batch", "sentAt"}
    assert request.body["batch"] == [
        {
            "type": "track",
            "event": "installation_heartbeat",
            "anonymousId": event.data["installation_id"],
            "properties": event.data,
            "timestamp": "2026-11-28T00:00:03.000Z",
            "messageId": event.uuid,
            "context": {"library": {"name": "beacon-router", "version": "0.1.0"}},
        }
    ]
    assert len(fake.accepted) == 1


async def test_a_retried_batch_is_deduplicated_by_message_id(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(3)

    await backend.send(batch)
    await backend.send(batch)

    assert fake.received_total == 6 and len(fake.accepted) == 3


async def test_user_id_identity_and_gzip_for_collectors_that_take_it(fake, build):
    backend = build(config(fake.url, identify_as="userId", gzip=True))
    event = Event.new(
        {"distinct_id": "user-9", "properties": {}, "$set": {"plan": "pro"}},
        name="signed_in",
        source="posthog",
    )

    assert (await backend.send([event])).ok

    (request,) = fake.requests
    assert request.headers["Content-Encoding"] == "gzip"
    (sent,) = request.body["batch"]
    assert sent["userId"] == "user-9" and "anonymousId" not in sent
    assert sent["context"]["traits"] == {"plan": "pro"}


async def test_a_wrong_write_key_is_dead_lettered(fake, build, beacons):
    backend = build(config(fake.url, write_key="wrong"))

    result = await backend.send(beacons(2))

    assert set(result.dead) == {0, 1} and result.reason == "segment: HTTP 401"


async def test_an_event_over_32_kb_is_dead_lettered_alone(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(3)
    batch[2].data["blob"] = "x" * 32_000

    result = await backend.send(batch)

    assert set(result.dead) == {2} and "32000 bytes" in result.dead[2]
    assert set(fake.accepted) == {batch[0].uuid, batch[1].uuid}


async def test_a_batch_over_500_kb_is_split_by_bytes(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(40, blob="x" * 25_000)  # about 1 MB

    assert (await backend.send(batch)).ok

    assert len(fake.requests) >= 2
    assert all(r.size <= 500_000 for r in fake.requests)
    assert len(fake.accepted) == 40


async def test_400_bisects_to_dead_letter_only_the_message_the_collector_refuses(
    fake, build, beacons
):
    fake.max_message = 2000  # a stricter collector than Segment
    backend = build(config(fake.url))
    batch = beacons(4)
    batch[1].data["blob"] = "x" * 3000

    result = await backend.send(batch)

    assert result.dead == {1: "segment: HTTP 400"}
    assert set(fake.accepted) == {batch[0].uuid, batch[2].uuid, batch[3].uuid}


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "3"}), (500, {}), (503, {})])
async def test_throttling_and_server_errors_are_retried(fake, build, beacons, status, headers):
    fake.fail_next(status, headers=headers)
    backend = build(config(fake.url))

    result = await backend.send(beacons(2))

    assert result.retry == (0, 1)
    assert result.retry_after == (3 if headers else None)


def test_render_masks_the_write_key(build, beacons):
    backend = build(config("https://events.eu1.segmentapis.com"))

    (request,) = backend.render(beacons(1))

    assert request.url == "https://events.eu1.segmentapis.com/v1/batch"
    assert request.headers["Authorization"] == "Basic ***"
