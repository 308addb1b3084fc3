"""The Mixpanel backend against a local Mixpanel Import API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_mixpanel import PROJECT_ID, SERVICE_ACCOUNT, TOKEN, FakeMixpanel

from router.config.loader import loads
from router.errors import ConfigError
from router.event import Event

pytestmark = pytest.mark.timeout(30)


def config(url: str | None, **extra: Any) -> str:
    options = {"project_token": TOKEN, **extra}
    if url is not None:
        options["host"] = url
    lines = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in options.items() if v is not None)
    return f"backends:\n  mixpanel:\n    type: mixpanel{lines}\n"


@pytest.fixture
async def fake(serve) -> FakeMixpanel:
    fake = FakeMixpanel()
    fake.url = await serve(fake)
    return fake


async def test_beacon_becomes_an_import_event_with_ms_time_and_insert_id(fake, build, beacons):
    backend = build(config(fake.url))
    (event,) = beacons(1)

    assert (await backend.send([event])).ok

    (request,) = fake.requests
    assert request.path == "/import" and request.query == {"strict": "1"}
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.body == [
        {
            "event": "installation_heartbeat",
            "properties": {
                **event.data,
                "time": 1795824003000,
                "distinct_id": event.data["installation_id"],
                "$insert_id": event.uuid,
            },
        }
    ]


async def test_a_retried_import_is_deduplicated_by_insert_id(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(3)

    await backend.send(batch)
    await backend.send(batch)

    assert fake.received_total == 6 and len(fake.accepted) == 3


async def test_service_account_authenticates_with_the_project_id_in_the_query(fake, build, beacons):
    user, secret = SERVICE_ACCOUNT
    backend = build(
        config(
            fake.url,
            project_token=None,
            service_account=user,
            service_account_secret=secret,
            project_id=int(PROJECT_ID),
        )
    )

    assert (await backend.send(beacons(1))).ok

    assert fake.requests[0].query == {"strict": "1", "project_id": PROJECT_ID}


async def test_wrong_credentials_are_dead_lettered(fake, build, beacons):
    backend = build(config(fake.url, project_token="not-the-token"))

    result = await backend.send(beacons(2))

    assert set(result.dead) == {0, 1} and result.reason == "mixpanel: HTTP 401"


async def test_strict_400_dead_letters_exactly_the_failed_records_and_keeps_the_rest(
    fake, build, beacons
):
    backend = build(config(fake.url))
    batch = beacons(4)
    batch[1].data["installation_id"] = "anonymous"  # a placeholder Mixpanel refuses
    batch[3].data["installation_id"] = "null"

    result = await backend.send(batch)

    assert result.dead == {
        1: "mixpanel rejected properties.distinct_id",
        3: "mixpanel rejected properties.distinct_id",
    }
    assert result.retry == ()
    assert set(fake.accepted) == {batch[0].uuid, batch[2].uuid}


async def test_more_than_2000_events_go_in_requests_of_at_most_2000(fake, build, beacons):
    backend = build(config(fake.url, gzip=False))
    batch = beacons(2500)

    assert (await backend.send(batch)).ok

    assert [len(r.body) for r in fake.requests] == [2000, 500]
    assert len(fake.accepted) == 2500


async def test_a_batch_over_10_mb_is_split_by_bytes(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(12, blob="x" * 900_000)

    assert (await backend.send(batch)).ok

    assert len(fake.requests) == 2
    assert all(r.size <= 10_000_000 for r in fake.requests)
    assert len(fake.accepted) == 12


async def test_an_event_over_1_mb_is_dead_lettered_alone(fake, build, beacons):
    backend = build(config(fake.url))
    batch = beacons(2)
    batch[0].data["blob"] = "x" * 1_000_000

    result = await backend.send(batch)

    assert set(result.dead) == {0} and not result.retry
    assert set(fake.accepted) == {batch[1].uuid}


async def test_413_halves_the_request(fake, build, beacons):
    fake.max_body = 2500
    backend = build(config(fake.url))
    batch = beacons(6)

    assert (await backend.send(batch)).ok

    assert fake.requests[0].size > 2500
    assert len(fake.accepted) == 6


async def test_429_is_retried_honouring_retry_after_when_given(fake, build, beacons):
    fake.fail_next(429, body={"code": 429, "error": "Project exceeded rate limits."})
    fake.fail_next(429, headers={"Retry-After": "12"}, body={"code": 429})
    backend = build(config(fake.url))

    first = await backend.send(beacons(2))
    second = await backend.send(beacons(2))

    assert first.retry == (0, 1) and first.retry_after is None  # the worker's backoff decides
    assert second.retry == (0, 1) and second.retry_after == 12


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried(fake, build, beacons, status):
    fake.fail_next(status)
    backend = build(config(fake.url))

    result = await backend.send(beacons(3))

    assert result.retry == (0, 1, 2)


async def test_forwarded_posthog_event_keeps_its_name_id_time_and_properties(fake, build):
    event = Event.new(
        {
            "distinct_id": "user-7",
            "timestamp": "2026-11-27T10:00:00Z",
            "properties": {"plan": "pro"},
            "$set": {"email_domain": "x.test"},
        },
        name="upgraded",
        source="posthog",
    )
    backend = build(config(fake.url))

    assert (await backend.send([event])).ok

    assert fake.requests[0].body == [
        {
            "event": "upgraded",
            "properties": {
                "plan": "pro",
                "time": 1795773600000,
                "distinct_id": "user-7",
                "$insert_id": event.uuid,
            },
        }
    ]  # $set is a profile update: /engage, not /import


def test_region_picks_the_regional_host_and_render_masks_credentials(build, beacons):
    backend = build(config(None, region="eu"))

    (request,) = backend.render(beacons(1))

    assert request.url == "https://api-eu.mixpanel.com/import?strict=1"
    assert request.headers["Authorization"] == "Basic ***"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"region": "eu", "host": "https://mp.example.com"}, "set region or host, not both"),
        ({"project_token": None}, "set project_token, or service_account"),
        ({"project_token": None, "service_account": "sa"}, "service_account needs"),
    ],
)
def test_config_rejects_ambiguous_or_missing_credentials(options, message):
    with pytest.raises(ConfigError, match=message):
        loads(config(None, **options))
