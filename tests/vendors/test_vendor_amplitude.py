"""The Amplitude backend against a local Amplitude HTTP V2 API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_amplitude import API_KEY, FakeAmplitude

from router.config.loader import loads
from router.errors import ConfigError
from router.event import Event

pytestmark = pytest.mark.timeout(30)


def config(url: str | None, **extra: Any) -> str:
    options = {"api_key": API_KEY, **extra}
    if url is not None:
        options["host"] = url
    lines = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in options.items())
    return f"backends:\n  amplitude:\n    type: amplitude{lines}\n"


@pytest.fixture
async def fake(serve) -> FakeAmplitude:
    fake = FakeAmplitude()
    fake.url = await serve(fake)
    return fake


async def test_beacon_becomes_an_amplitude_event_keyed_by_insert_id(fake, build, beacons):
    backend = build(config(fake.url))
    (event,) = beacons(1)

    assert (await backend.send([event])).ok

    (request,) = fake.requests
    assert request.path == "/2/httpapi"
    assert request.body["options"] == {"min_id_length": 1}
    assert request.body["api_key"] == API_KEY
    assert request.body["events"] == [
        {
            "event_type": "installation_heartbeat",
            "device_id": event.data["installation_id"],
            "time": 1795824003000,
            "insert_id": event.uuid,
            "event_properties": event.data,
            "library": "beacon-router/0.1.0",
        }
    ]


async def test_a_retried_batch_is_deduplicated_by_insert_id(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(3)

    await backend.send(batch)
    await backend.send(batch)

    assert fake.received_total == 6 and len(fake.accepted) == 3


async def test_short_ids_are_sent_as_they_are_not_padded(fake, build, beacons):
    backend = build(config(fake.url, identify_as="user_id"))
    (event,) = beacons(1, installation_id="ab1")

    assert (await backend.send([event])).ok

    (sent,) = fake.requests[0].body["events"]
    assert sent["user_id"] == "ab1" and "device_id" not in sent


async def test_400_dead_letters_the_named_events_and_resends_the_rest_at_once(fake, build, beacons):
    backend = build(config(fake.url, min_id_length=5))
    batch = beacons(3)
    batch[1].data["installation_id"] = "abc"  # under the 5 characters this project requires

    result = await backend.send(batch)

    assert result.dead == {1: "amplitude: too short device_id"}
    assert result.retry == ()
    assert len(fake.requests) == 2  # the batch, then the two good events again
    assert set(fake.accepted) == {batch[0].uuid, batch[2].uuid}


async def test_silenced_devices_are_dead_lettered(fake, build, beacons):
    batch = beacons(2)
    fake.silenced = {batch[0].data["installation_id"]}
    backend = build(config(fake.url))

    result = await backend.send(batch)

    assert result.dead == {0: "amplitude: silenced device or user"}
    assert set(fake.accepted) == {batch[1].uuid}


async def test_a_second_400_on_the_resend_leaves_the_rest_to_the_retry_schedule(
    fake, build, beacons
):
    fake.fail_next(400, body={"code": 400, "events_with_invalid_fields": {"time": [1]}})
    fake.fail_next(400, body={"code": 400, "events_with_invalid_fields": {"time": [0]}})
    backend = build(config(fake.url))

    result = await backend.send(beacons(3))

    assert result.dead == {1: "amplitude: invalid time", 0: "amplitude: invalid time"}
    assert result.retry == (2,)
    assert len(fake.requests) == 2


async def test_a_wrong_api_key_dead_letters_the_batch(fake, build, beacons):
    backend = build(config(fake.url, api_key="not-the-key"))

    result = await backend.send(beacons(2))

    assert set(result.dead) == {0, 1} and result.reason == "amplitude: HTTP 400"


async def test_a_batch_over_1_mb_is_split_by_bytes(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(5, blob="x" * 300_000)

    assert (await backend.send(batch)).ok

    assert len(fake.requests) == 2
    assert all(r.size <= 1_000_000 for r in fake.requests)
    assert len(fake.accepted) == 5


async def test_more_than_2000_events_go_in_requests_of_at_most_2000(fake, build):
    backend = build(config(fake.url))
    batch = [Event.new({"installation_id": f"inst-{i:05d}"}) for i in range(2100)]

    assert (await backend.send(batch)).ok

    assert [len(r.body["events"]) for r in fake.requests] == [2000, 100]


async def test_413_halves_the_request(fake, build, beacons):
    fake.max_body = 2000
    backend = build(config(fake.url))

    assert (await backend.send(beacons(6))).ok

    assert fake.requests[0].size > 2000 and len(fake.accepted) == 6


async def test_429_waits_30_seconds_unless_the_server_says_otherwise(fake, build, beacons):
    throttled = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_events": [0],
    }
    fake.fail_next(429, body=throttled)
    fake.fail_next(429, body=throttled, headers={"Retry-After": "5"})
    backend = build(config(fake.url))

    first = await backend.send(beacons(2))
    second = await backend.send(beacons(2))

    assert first.retry == (0, 1) and first.retry_after == 30
    assert second.retry == (0, 1) and second.retry_after == 5


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried(fake, build, beacons, status):
    fake.fail_next(status)
    backend = build(config(fake.url))

    result = await backend.send(beacons(2))

    assert result.retry == (0, 1)


async def test_forwarded_posthog_person_properties_become_user_properties(fake, build):
    event = Event.new(
        {
            "distinct_id": "user-1234",
            "properties": {"plan": "pro"},
            "$set": {"tier": "b"},
            "$set_once": {"first": "2026-01-01"},
        },
        name="upgraded",
        source="posthog",
    )
    backend = build(config(fake.url, identify_as="user_id"))

    assert (await backend.send([event])).ok

    (sent,) = fake.requests[0].body["events"]
    assert sent["user_properties"] == {"$set": {"tier": "b"}, "$setOnce": {"first": "2026-01-01"}}
    assert sent["event_type"] == "upgraded" and sent["user_id"] == "user-1234"


def test_eu_region_and_masked_key_in_render(build, beacons):
    backend = build(config(None, region="eu"))

    (request,) = backend.render(beacons(1))

    assert request.url == "https://api.eu.amplitude.com/2/httpapi"
    assert request.body["api_key"] == "***"


def test_config_rejects_region_and_host_together():
    with pytest.raises(ConfigError, match="set region or host, not both"):
        loads(config("https://amp.example.com", region="us"))
