"""posthog-js's start-up requests (flags, remote config) answered as PostHog answers a project
with nothing configured, and CORS headers on every answer of a PostHog path, errors included.
(tests/web/posthog/test_posthog_js_browser.py runs posthog-js itself against them.)"""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient
from capture_support import TOKEN, StartRouter

from router.config.loader import loads
from router.web.app import create_app

APP = "https://app.example.com"
CORS = f"{{cors_origins: ['{APP}']}}"


async def test_flags_v2_has_no_flag_and_no_error(start_router: StartRouter):
    router = await start_router(posthog=CORS)
    for method in ("POST", "GET"):
        resp = await router.client.request(method, "/flags/?v=2", headers={"Origin": APP},
                                           json={"token": TOKEN, "distinct_id": "u1"})
        assert resp.status == 200 and resp.content_type == "application/json"
        body = await resp.json()
        assert body["flags"] == {} and body["errorsWhileComputingFlags"] is False
        assert body["requestId"]
        assert resp.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize("path", ["/flags", "/flags/?v=1", "/decide/?v=3", "/decide"])
async def test_flags_v1_and_decide_answer_in_their_own_format(start_router: StartRouter, path):
    router = await start_router(posthog=CORS)
    resp = await router.client.post(path, json={"token": TOKEN, "distinct_id": "u1"})
    assert resp.status == 200
    body = await resp.json()
    assert body["featureFlags"] == {} and body["featureFlagPayloads"] == {}
    assert body["errorsWhileComputingFlags"] is False
    if path.startswith("/decide"):  # /decide carried the remote config too
        assert body["sessionRecording"] is False and body["siteApps"] == []


async def test_remote_config_json_and_script_turn_nothing_on(start_router: StartRouter):
    router = await start_router(posthog=CORS)
    resp = await router.client.get(f"/array/{TOKEN}/config", headers={"Origin": APP})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == APP
    config = await resp.json()
    assert config["token"] == TOKEN
    assert (config["hasFeatureFlags"], config["sessionRecording"], config["surveys"]) == (
        False, False, False)

    resp = await router.client.get(f"/array/{TOKEN}/config.js", headers={"Origin": APP})
    assert resp.status == 200 and resp.content_type == "application/javascript"
    script = await resp.text()
    key = f'window._POSTHOG_REMOTE_CONFIG["{TOKEN}"] = {{'
    assert key in script
    # the object the script assigns is the JSON config
    assigned = script.split("config: ", 1)[1].split(",\n    siteApps")[0]
    assert json.loads(assigned) == config


@pytest.mark.parametrize("token", ["phc<script>", "a%22b", "x" * 201])
async def test_a_token_that_is_no_token_is_a_404_with_cors(start_router: StartRouter, token):
    router = await start_router(posthog=CORS)
    resp = await router.client.get(f"/array/{token}/config.js", headers={"Origin": APP})
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "<script" not in await resp.text()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("PUT", "/flags/", {}, 405),
        ("DELETE", "/e/", {}, 405),
        ("GET", "/i/v1/analytics/events", {}, 405),
        ("POST", "/batch/", {"data": b"{not json"}, 400),
        ("POST", "/e/", {"data": b"x" * 300_000}, 413),
        ("GET", "/array/phc_x/unknown", {}, 404),
    ],
)
async def test_errors_on_posthog_paths_carry_the_cors_headers(
    start_router: StartRouter, method, path, kwargs, status
):
    router = await start_router(posthog=CORS, server="{max_body: 256KiB}")
    resp = await router.client.request(method, path, headers={"Origin": APP}, **kwargs)
    assert resp.status == status
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert resp.headers["Vary"] == "Origin"
    assert set(await resp.json()) == {"error", "detail"}


async def test_the_rate_limit_answer_carries_the_cors_headers(aiohttp_client, tmp_path):
    config = loads(f"spool: {{path: {tmp_path / 'spool.db'}}}\n"
                   f"sources: {{posthog: {CORS}}}\n"
                   "limits: {per_ip: {rate: 1, per: 1h, burst: 1}}\n")
    client: TestClient = await aiohttp_client(create_app(config))
    statuses = []
    for _ in range(3):
        resp = await client.post("/flags/?v=2", json={"token": TOKEN}, headers={"Origin": APP})
        statuses.append(resp.status)
        assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert statuses[0] == 200 and statuses[-1] == 429


async def test_paths_that_are_not_posthogs_get_no_cors_headers(start_router: StartRouter):
    router = await start_router(posthog=CORS)
    for path in ("/beacon", "/nope"):
        resp = await router.client.get(path, headers={"Origin": APP})
        assert resp.status in (404, 405)
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_without_sources_posthog_there_are_no_flags_either(aiohttp_client, tmp_path):
    config = loads(f"spool: {{path: {tmp_path / 'spool.db'}}}\n"
                   "sources: {posthog: {enabled: false}}\n")
    client: TestClient = await aiohttp_client(create_app(config))
    assert (await client.post("/flags/?v=2", json={})).status == 404
    assert (await client.get(f"/array/{TOKEN}/config.js")).status == 404
