"""The OpenAPI description: valid 3.1, in step with the routes and docs/openapi.json, and true of
a live router — schemathesis finds no 5xx and no answer the description does not allow."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import REPO, RouterProcess, free_port

from router.config.loader import loads
from router.web.app import create_app
from router.web.openapi import document, render

ADMIN_TOKEN = "an-admin-token-for-the-openapi-test"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Every endpoint on one port, each optional part switched on, nothing outside the test's folder.
CONFIG = f"""\
server: {{max_body: 64KiB, request_timeout: 5s, shutdown_timeout: 2s}}
spool: {{type: sqlite, path: ./spool.db}}
sources: {{posthog: {{cors_origins: ["https://app.example.com"]}}}}
admin: {{token: {ADMIN_TOKEN}, listen: same}}
stats: {{public: true, k: 2}}
pipeline:
  - {{type: validate, schema: {REPO}/config/schemas/beacon-v1.json, on_invalid: drop}}
  - {{type: opt_out, flag: telemetry}}
  - {{type: hash, fields: [installation_id], key: a-hash-key-for-the-openapi-test}}
backends:
  archive: {{type: store, url: "sqlite:///archive.db"}}
  lines: {{type: file, path: ./events.jsonl}}
"""


def test_the_description_is_valid_openapi_3_1():
    validate(orjson.loads(render()))
    assert document()["openapi"] == "3.1.0"


def test_the_committed_docs_openapi_json_is_the_generated_one():
    committed = (Path(REPO) / "docs" / "openapi.json").read_bytes()

    assert committed == render(), "run: python -m router.web.openapi > docs/openapi.json"


def test_every_route_of_a_fully_configured_router_is_described(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app(loads(CONFIG, file="router.yaml", env={}))
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    described = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }

    assert routes - described == set()
    assert described - routes == set()


async def test_the_router_serves_the_description(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = await aiohttp_client(create_app(loads(CONFIG, file="router.yaml", env={})))

    response = await client.get("/openapi.json")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == render()


@pytest.fixture(scope="module")
def live_router(tmp_path_factory):
    """``beacon-router serve`` with CONFIG in a fresh folder, as a real process; its base URL."""
    workdir = tmp_path_factory.mktemp("openapi")
    (workdir / "router.yaml").write_text(CONFIG)
    router = RouterProcess("router.yaml", free_port(), str(workdir))
    router.start()
    url = router.url
    try:
        _wait_ready(url, router)
        _post(
            url + "/beacon",
            [{"installation_id": f"install-{i}", "version": "1.4.2"} for i in range(3)],
        )  # something for stats and the DLQ views
        yield url
    finally:
        router.stop()
    logs = (workdir / "router.log").read_text(errors="replace")
    assert "unhandled error" not in logs, logs[-5000:]


def _wait_ready(url: str, router: RouterProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert router.proc is not None
        if router.proc.poll() is not None:
            raise AssertionError(router.logs())
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the router did not become ready")


def _post(url: str, body: object) -> None:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


schema = schemathesis.openapi.from_dict(orjson.loads(render()))
# OpenMetrics text is text on the wire: send generated strings as they are.
schemathesis.serializer.alias("application/openmetrics-text", "text/plain")


# GET /admin/tap streams until its limit or the client leaves: a fuzzer would wait on it to the
# end of its timeout (tests/ops/test_tap.py tests it, limit and all).
@schema.exclude(path="/admin/tap").parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_live_router_answers_as_described(case, live_router):
    case.call_and_validate(base_url=live_router, headers=AUTH, checks=CHECKS, timeout=10)
