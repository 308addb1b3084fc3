"""The PostHog backend against a local PostHog capture API, and against posthog-python itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import posthog
import pytest
from fake_posthog import API_KEY, FakePostHog

from router.config.loader import loads
from router.errors import ConfigError
from router.event import Event

pytestmark = pytest.mark.timeout(30)


def config(url: str, **extra: Any) -> str:
    lines = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in extra.items())
    return f"""
backends:
  posthog:
    type: posthog
    host: {url}
    api_key: {API_KEY}{lines}
"""


@pytest.fixture
async def fake(serve) -> FakePostHog:
    fake = FakePostHog()
    fake.url = await serve(fake)
    return fake


def sent_events(fake: FakePostHog) -> list[dict[str, Any]]:
    return [e for r in fake.requests for e in r.body["batch"]]


# -- mapping


async def test_beacon_becomes_one_posthog_event_keyed_by_the_router_uuid(fake, build, beacons):
    backend = build(config(fake.url))
    (event,) = beacons(1)

    result = await backend.send([event])

    assert result.ok
    (sent,) = sent_events(fake)
    assert sent == {
        "event": "installation_heartbeat",
        "distinct_id": event.data["installation_id"],
        "properties": {**event.data, "$geoip_disable": True},
        "timestamp": "2026-11-28T00:00:03.000Z",
        "uuid": event.uuid,
    }


async def test_event_time_falls_back_to_received_at_when_the_beacon_has_none(fake, build, beacons):
    backend = build(config(fake.url, event="daily_ping", distinct_id="platform.os"))
    (event,) = beacons(1, timestamp="yesterday-ish")

    await backend.send([event])

    (sent,) = sent_events(fake)
    assert sent["timestamp"] == "2026-11-28T00:00:04.250Z"
    assert sent["event"] == "daily_ping"
    assert sent["distinct_id"] == "linux"


async def test_beacon_without_its_distinct_id_is_dead_lettered_not_sent_under_a_made_up_id(
    fake, build, beacons
):
    backend = build(config(fake.url))
    batch = beacons(3)
    del batch[1].data["installation_id"]

    result = await backend.send(batch)

    assert result.dead == {1: "no usable distinct id at 'installation_id'"}
    assert result.retry == ()
    assert [e["uuid"] for e in sent_events(fake)] == [batch[0].uuid, batch[2].uuid]


async def test_groups_add_groups_and_one_groupidentify_per_distinct_installation(
    fake, build, beacons
):
    backend = build(config(fake.url, groups={"installation": "installation_id"}))
    first, other = beacons(2)
    again = Event.new({**first.data, "version": "1.5.0"})  # same installation, later beacon

    assert (await backend.send([first, other, again])).ok

    sent = sent_events(fake)
    identifies = [e for e in sent if e["event"] == "$groupidentify"]
    heartbeats = [e for e in sent if e["event"] == "installation_heartbeat"]
    assert len(heartbeats) == 3 and len(identifies) == 2
    for beat in heartbeats:
        assert beat["properties"]["$groups"] == {"installation": beat["distinct_id"]}
    latest = next(
        e for e in identifies if e["properties"]["$group_key"] == first.data["installation_id"]
    )
    assert latest["properties"]["$group_type"] == "installation"
    assert latest["properties"]["$group_set"] == again.data  # the batch's latest beacon wins
    assert latest["distinct_id"] == f"$installation_{first.data['installation_id']}"


async def test_a_retried_batch_is_deduplicated_by_uuid_groupidentify_included(fake, build, beacons):
    backend = build(config(fake.url, groups={"installation": "installation_id"}))
    batch = beacons(3)

    await backend.send(batch)
    await backend.send(batch)

    assert fake.received_total == 12  # 3 heartbeats + 3 $groupidentify, twice
    assert len(fake.accepted) == 6  # ... which PostHog counts once


async def test_request_is_gzipped_with_the_project_key_in_the_body(fake, build, beacons):
    backend = build(config(fake.url))

    await backend.send(beacons(2))

    (request,) = fake.requests
    assert request.path == "/batch/"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body["api_key"] == API_KEY
    assert set(request.body) == {"api_key", "batch", "historical_migration", "sent_at"}


async def test_render_shows_the_uncompressed_body_with_the_key_masked(build, beacons):
    backend = build(config("https://eu.i.posthog.com", gzip=False))
    batch = beacons(2)

    (request,) = backend.render(batch)

    assert request.url == "https://eu.i.posthog.com/batch/"
    assert request.body["api_key"] == "***"
    assert [e["uuid"] for e in request.body["batch"]] == [e.uuid for e in batch]
    assert API_KEY not in json.dumps(request.body) + json.dumps(dict(request.headers))


# -- limits


async def test_a_batch_over_5_mib_is_split_into_requests_under_5_mib(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(8, blob="x" * 800 * 1024)  # 8 * 800 KiB, about 6.4 MiB

    assert (await backend.send(batch)).ok

    assert len(fake.requests) == 2
    assert all(r.size <= 5 * 1024 * 1024 for r in fake.requests)
    assert {e["uuid"] for e in sent_events(fake)} == {e.uuid for e in batch}


async def test_an_event_over_900_kib_is_dead_lettered_alone(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(3)
    batch[1].data["blob"] = "x" * 901 * 1024

    result = await backend.send(batch)

    assert set(result.dead) == {1}
    assert "921600 bytes" in result.dead[1]
    assert [e["uuid"] for e in sent_events(fake)] == [batch[0].uuid, batch[2].uuid]


async def test_413_halves_the_batch_until_each_request_fits(fake, build, beacons):
    fake.max_body = 3000
    backend = build(config(fake.url))
    batch = beacons(8)

    result = await backend.send(batch)

    assert result.ok
    too_large, *accepted = fake.requests
    assert too_large.size > 3000
    assert accepted and all(r.size <= 3000 for r in accepted)
    assert set(fake.accepted) == {e.uuid for e in batch}


async def test_a_single_event_still_too_large_is_dead_lettered(fake, build, beacons):
    fake.max_body = 300
    backend = build(config(fake.url))

    result = await backend.send(beacons(2))

    assert set(result.dead) == {0, 1}
    assert result.dead[0] == "posthog: HTTP 413 (request too large)"
    assert len(fake.requests) == 3  # the pair, then each alone


# -- failure classification


async def test_429_is_retried_after_the_servers_retry_after(fake, build, beacons):
    fake.fail_next(429, headers={"Retry-After": "7"}, body={"code": "rate_limited"})
    backend = build(config(fake.url))

    result = await backend.send(beacons(3))

    assert result.retry == (0, 1, 2) and not result.dead
    assert result.retry_after == 7
    assert result.reason == "posthog: HTTP 429 (rate_limited)"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried(fake, build, beacons, status):
    fake.fail_next(status)
    backend = build(config(fake.url))

    result = await backend.send(beacons(2))

    assert result.retry == (0, 1) and not result.dead


async def test_a_wrong_api_key_is_dead_lettered_without_echoing_it(fake, build, beacons):
    fake.api_key = "phc_another_project"
    backend = build(config(fake.url))

    result = await backend.send(beacons(2))

    assert set(result.dead) == {0, 1} and not result.retry
    assert result.reason == "posthog: HTTP 401 (invalid_api_key)"


async def test_unreachable_posthog_is_retried(build, beacons, closed_port):
    backend = build(config(f"http://127.0.0.1:{closed_port}"))

    result = await backend.send(beacons(2))

    assert result.retry == (0, 1)
    assert result.reason.startswith("posthog: cannot connect to 127.0.0.1")


async def test_when_posthog_is_down_the_rest_of_the_batch_is_not_attempted(fake, build, beacons):
    fake.fail_next(503)
    backend = build(config(fake.url))
    batch = beacons(8, blob="x" * 800 * 1024)  # two requests' worth

    result = await backend.send(batch)

    assert len(fake.requests) == 1
    assert result.retry == tuple(range(8))


# -- posthog-python, the reference client


def sdk_client(url: str, **options: Any) -> posthog.Client:
    return posthog.Client(API_KEY, host=url, sync_mode=True, gzip=True, max_retries=0, **options)


async def test_request_has_the_same_fields_as_posthog_python_sends(fake, build, beacons):
    (event,) = beacons(1)
    client = sdk_client(fake.url)
    await asyncio.to_thread(
        client.capture,
        "installation_heartbeat",
        distinct_id=event.data["installation_id"],
        properties=event.data,
        timestamp=event.data["timestamp"],
        uuid=event.uuid,
    )
    backend = build(config(fake.url))
    await backend.send([event])

    sdk, ours = fake.requests
    assert set(ours.body) == set(sdk.body)
    (sdk_event,), (our_event,) = sdk.body["batch"], ours.body["batch"]
    assert set(our_event) == set(sdk_event)
    assert our_event["uuid"] == sdk_event["uuid"]
    assert {k: our_event["properties"][k] for k in event.data} == {
        k: sdk_event["properties"][k] for k in event.data
    }
    for header in ("Content-Type", "Content-Encoding"):
        assert ours.headers[header] == sdk.headers[header]


async def test_groupidentify_has_the_fields_posthog_python_sends(fake, build, beacons):
    (event,) = beacons(1)
    key = event.data["installation_id"]
    client = sdk_client(fake.url)
    await asyncio.to_thread(client.group_identify, "installation", key, {"version": "1.4.0"})
    backend = build(config(fake.url, groups={"installation": "installation_id"}))
    await backend.send([event])

    (sdk_event,) = fake.requests[0].body["batch"]
    ours = next(e for e in fake.requests[1].body["batch"] if e["event"] == "$groupidentify")
    assert set(ours) == set(sdk_event)
    group_keys = {"$group_type", "$group_key", "$group_set"}
    assert group_keys <= set(sdk_event["properties"]) and group_keys <= set(ours["properties"])
    assert ours["properties"]["$group_key"] == sdk_event["properties"]["$group_key"] == key


async def test_events_from_the_capture_api_round_trip_unchanged(fake, build):
    client = sdk_client(fake.url)
    await asyncio.to_thread(
        client.capture,
        "feature_used",
        distinct_id="user-42",
        properties={"feature": "export", "$current_url": "https://x.test/"},
        timestamp="2026-11-27T10:00:00Z",
    )
    await asyncio.to_thread(client.set, distinct_id="user-42", properties={"plan": "pro"})
    await asyncio.to_thread(
        client.set_once, distinct_id="user-42", properties={"first_seen": "2026-01-01"}
    )
    originals = sent_events(fake)
    # What the router's capture API makes of each event before the spool.
    routed = [
        Event.new(
            {k: v for k, v in e.items() if k not in ("event", "uuid")},
            name=e["event"],
            source="posthog",
            uuid=e["uuid"],
        )
        for e in originals
    ]
    fake.requests.clear()

    backend = build(config(fake.url))
    assert (await backend.send(routed)).ok

    assert sent_events(fake) == originals


# -- capture v1


async def test_v1_request_carries_what_posthog_python_v1_sends(fake, build, beacons):
    (event,) = beacons(1)
    client = sdk_client(fake.url, capture_mode="v1")
    await asyncio.to_thread(
        client.capture,
        "installation_heartbeat",
        distinct_id=event.data["installation_id"],
        properties=event.data,
        timestamp=event.data["timestamp"],
        uuid=event.uuid,
    )
    backend = build(config(fake.url, capture_mode="v1", gzip=False))
    assert (await backend.send([event])).ok

    sdk, ours = fake.requests
    assert sdk.path == ours.path == "/i/v1/analytics/events"
    assert set(ours.body) == set(sdk.body) == {"created_at", "batch"}
    (sdk_event,), (our_event,) = sdk.body["batch"], ours.body["batch"]
    assert set(our_event) == set(sdk_event)
    assert our_event["uuid"] == event.uuid
    posthog_headers = {h for h in sdk.headers if h.lower().startswith("posthog-")}
    assert posthog_headers <= set(ours.headers)
    assert ours.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "$lib" not in our_event["properties"]  # v1 takes it from PostHog-Sdk-Info


async def test_v1_retries_only_the_events_answered_retry_and_dead_letters_drops(
    fake, build, beacons
):
    batch = beacons(4)
    fake.v1_verdicts = {batch[1].uuid: ["retry"], batch[2].uuid: ["drop"]}
    backend = build(config(fake.url, capture_mode="v1"))

    result = await backend.send(batch)

    assert result.retry == (1,)
    assert result.dead == {2: "posthog dropped the event (billing_limit_exceeded)"}
    assert set(fake.accepted) == {batch[0].uuid, batch[3].uuid}


async def test_v1_resend_keeps_the_request_id_and_counts_the_attempt(fake, build, beacons):
    batch = beacons(2)
    fake.v1_verdicts = {batch[0].uuid: ["retry", "retry"]}
    backend = build(config(fake.url, capture_mode="v1"))

    first = await backend.send(batch)
    remaining = [batch[i] for i in first.retry]
    second = await backend.send(remaining)
    third = await backend.send(remaining)

    assert first.retry == second.retry == (0,) and third.ok
    sent = [(r.headers["PostHog-Request-Id"], r.headers["PostHog-Attempt"]) for r in fake.requests]
    assert sent[0][0] != sent[1][0]  # other events, another request
    assert sent[1][0] == sent[2][0]
    assert [attempt for _, attempt in sent] == ["1", "1", "2"]


async def test_v1_moves_set_into_properties_and_lifts_sentinels(fake, build):
    event = Event.new(
        {
            "distinct_id": "u1",
            "timestamp": "2026-11-27T10:00:00+01:00",
            "properties": {
                "$session_id": "s-1",
                "$process_person_profile": "false",
                "$lib": "posthog-js",
                "page": "/",
            },
            "$set": {"plan": "pro"},
        },
        name="$pageview",
        source="posthog",
    )
    backend = build(config(fake.url, capture_mode="v1"))

    assert (await backend.send([event])).ok

    (sent,) = fake.requests[0].body["batch"]
    assert sent["session_id"] == "s-1"
    assert sent["options"] == {"process_person_profile": False}
    assert sent["properties"] == {"page": "/", "$set": {"plan": "pro"}, "$geoip_disable": True}
    assert sent["timestamp"] == "2026-11-27T09:00:00.000Z"  # v1 takes UTC only


async def test_v1_2xx_without_results_is_retried_not_assumed_delivered(fake, build, beacons):
    fake.fail_next(200, body={"status": 1})
    backend = build(config(fake.url, capture_mode="v1"))

    result = await backend.send(beacons(2))

    assert result.retry == (0, 1)


async def test_v1_unsupported_path_is_dead_lettered(fake, build, beacons):
    fake.fail_next(404, body={"detail": "not found"})
    backend = build(config(fake.url, capture_mode="v1"))

    result = await backend.send(beacons(1))

    assert set(result.dead) == {0}


@pytest.mark.parametrize("host", ["us.i.posthog.com", "ftp://posthog.example.com", "https://"])
def test_config_rejects_a_host_that_is_not_an_http_url(host):
    with pytest.raises(ConfigError, match="must be an http:// or https:// base URL"):
        loads(config(host))
