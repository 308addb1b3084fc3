"""``sources.posthog``: the token allowlist, CORS for browser SDKs, the switch, config errors."""

from __future__ import annotations

import pytest
from capture_support import TOKEN, StartRouter

from router.config.loader import loads
from router.errors import ConfigError

APP = "https://app.example.com"
EVENT = {"event": "e", "distinct_id": "u"}


async def test_without_cors_origins_no_cors_header_is_sent(start_router: StartRouter):
    router = await start_router()
    resp = await router.client.post("/e/", json=EVENT, headers={"Origin": APP})
    assert resp.status == 200
    assert not any(h.lower().startswith("access-control-") for h in resp.headers)


async def test_a_listed_origin_is_echoed_on_answers_and_errors(start_router: StartRouter):
    router = await start_router(posthog=f"{{cors_origins: ['{APP}']}}")
    for body, status in ((EVENT, 200), ({"event": "e"}, 400)):
        resp = await router.client.post("/e/", json=body, headers={"Origin": APP})
        assert resp.status == status
        assert resp.headers["Access-Control-Allow-Origin"] == APP
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Vary"] == "Origin"


async def test_an_unlisted_origin_is_not_echoed(start_router: StartRouter):
    router = await start_router(posthog=f"{{cors_origins: ['{APP}']}}")
    resp = await router.client.post("/e/", json=EVENT, headers={"Origin": "https://evil.example"})
    assert resp.status == 200  # the request itself is fine; the browser will hide the answer
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert resp.headers["Vary"] == "Origin"


async def test_preflight_of_a_listed_origin_allows_the_method_and_headers(
    start_router: StartRouter,
):
    router = await start_router(posthog=f"{{cors_origins: ['{APP}']}}")
    resp = await router.client.options(
        "/i/v0/e/",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
    assert int(resp.headers["Access-Control-Max-Age"]) > 0


async def test_preflight_of_an_unlisted_origin_gets_no_cors_headers(start_router: StartRouter):
    router = await start_router(posthog=f"{{cors_origins: ['{APP}']}}")
    resp = await router.client.options(
        "/e/", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert resp.status == 204
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Access-Control-Allow-Methods" not in resp.headers


async def test_a_star_allows_any_origin_by_echoing_it(start_router: StartRouter):
    router = await start_router(posthog="{cors_origins: ['*']}")
    resp = await router.client.post("/e/", json=EVENT, headers={"Origin": "https://any.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://any.example"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (EVENT, "project token is required"),
        ({**EVENT, "token": "phc_someone_else"}, "unknown project token"),
        ({"api_key": "phc_someone_else", "batch": [{**EVENT, "token": TOKEN}]}, "unknown"),
        ([{**EVENT, "token": TOKEN}, {**EVENT, "token": "phc_other"}], "different project tokens"),
        ([{**EVENT, "token": TOKEN}, {**EVENT, "$token": "phc_other"}], "different project tokens"),
    ],
    ids=["missing", "unknown", "batch-unknown", "mixed", "mixed-dollar"],
)
async def test_with_tokens_configured_a_missing_unknown_or_mixed_token_is_401(
    start_router: StartRouter, body, detail: str
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}, phc_second]}}")
    resp = await router.client.post("/batch/", json=body)
    assert resp.status == 401
    answer = await resp.json()
    assert answer["error"] == "unauthorized" and detail in answer["detail"]
    assert "phc_someone_else" not in answer["detail"] and "phc_other" not in answer["detail"]
    assert router.metric("rejected", "posthog", "unauthorized") == 1
    assert router.metric("received", "posthog") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"api_key": TOKEN, "batch": [{**EVENT, "token": "ignored: the batch's token stands"}]},
        [{**EVENT, "token": "phc_second"}, {**EVENT, "properties": {"token": "phc_second"}}],
        {**EVENT, "$token": TOKEN},
    ],
    ids=["batch", "array", "single"],
)
async def test_a_listed_token_may_write(start_router: StartRouter, body):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}, phc_second]}}")
    resp = await router.client.post("/batch/", json=body)
    assert resp.status == 200, await resp.text()
    assert router.metric("accepted", "posthog") == (len(body) if isinstance(body, list) else 1)


HEARTBEAT = {  # Operately's PostHogBeacon: no key in the body, `Authorization: Bearer <key>`
    "event": "installation_heartbeat",
    "distinct_id": "8a6e0804-2bd0-4672-b79d-d97027f9071a",
    "properties": {"version": "1.0.0", "platform": "linux", "deployment_type": "docker"},
}


async def test_capture_v0_takes_the_project_key_from_authorization_bearer(
    start_router: StartRouter,
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    resp = await router.client.post(
        "/capture/", json=HEARTBEAT, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"status": 1}
    [event] = await router.delivered(1)
    assert event.name == "installation_heartbeat"


@pytest.mark.parametrize(
    ("headers", "body", "detail"),
    [
        ({"Authorization": "Bearer phc_someone_else"}, HEARTBEAT, "unknown project token"),
        ({"Authorization": "Basic abc"}, HEARTBEAT, "Bearer <project token>"),
        ({"Authorization": f"Bearer {TOKEN}"}, {**HEARTBEAT, "api_key": "phc_second"},
         "different project tokens"),
    ],
    ids=["unknown", "not-bearer", "disagrees-with-body"],
)
async def test_capture_v0_refuses_a_bearer_key_that_is_unknown_malformed_or_contradicted(
    start_router: StartRouter, headers, body, detail: str
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}, phc_second]}}")
    resp = await router.client.post("/capture/", json=body, headers=headers)
    assert resp.status == 401
    answer = await resp.json()
    assert detail in answer["detail"] and "phc_someone_else" not in answer["detail"]


async def test_without_tokens_configured_mixed_or_missing_tokens_are_accepted(
    start_router: StartRouter,
):
    router = await start_router()
    body = [{**EVENT, "token": "a"}, {**EVENT, "token": "b"}, EVENT]
    resp = await router.client.post("/e/", json=body)
    assert resp.status == 200
    assert len(await router.delivered(3)) == 3


async def test_a_disabled_source_serves_no_posthog_path(start_router: StartRouter):
    router = await start_router(posthog="{enabled: false}")
    assert (await router.client.post("/batch/", json=EVENT)).status == 404
    assert (await router.client.post("/i/v1/analytics/events", json={})).status == 404


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ("{posthog: {tokens: ['']}}", "sources.posthog.tokens: a token is empty"),
        ("{posthog: {cors_origins: ['https://app.example.com/']}}", "is not an origin"),
        ("{posthog: {cors_origins: ['app.example.com']}}", "is not an origin"),
        ("{posthog: {cors: ['*']}}", "sources.posthog.cors: unknown key"),
        ("{segment: {}}", "sources.segment: unknown key"),
    ],
)
def test_config_errors_name_the_key(sources: str, message: str):
    with pytest.raises(ConfigError) as caught:
        loads(f"sources: {sources}\n", file="router.yaml")
    assert message in str(caught.value)
    assert "router.yaml:1" in str(caught.value)


def test_sources_default_to_posthog_on_with_no_allowlists():
    posthog = loads("{}\n").sources.posthog
    assert (posthog.enabled, posthog.tokens, posthog.cors_origins) == (True, (), ())
