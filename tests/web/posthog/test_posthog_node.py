"""The official posthog-node SDK (from the npm registry), pointed at a running router.

The SDK lives in ``node/`` (package.json and package-lock.json pin it); ``npm ci`` installs it
when ``node_modules`` is missing. Without Node.js the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from capture_support import TOKEN, StartRouter, assert_delivered_as_sent, routes_used

NODE_DIR = Path(__file__).parent / "node"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with posthog-node installed next to the script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "Node.js and npm are needed to drive posthog-node"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires them")
        pytest.skip(message)
    if not (NODE_DIR / "node_modules" / "posthog-node").is_dir():
        install = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if install.returncode != 0:
            message = f"npm ci failed (is the npm registry reachable?):\n{install.stderr[-2000:]}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    return node


async def run_sdk(node: str, host: str, token: str, mode: str) -> dict[str, Any]:
    """Run node/capture.mjs against ``host``; what it sent and the errors it reported."""
    # A subprocess, awaited: the router under test serves on this very event loop.
    proc = await asyncio.create_subprocess_exec(
        node,
        "capture.mjs",
        host,
        token,
        cwd=NODE_DIR,
        env={**os.environ, "POSTHOG_CAPTURE_MODE": mode},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    return json.loads(stdout)


@pytest.mark.parametrize(("mode", "route"), [("v0", "/batch/"), ("v1", "/i/v1/analytics/events")])
async def test_every_posthog_node_event_reaches_the_backend_intact(
    node: str, start_router: StartRouter, mode: str, route: str
):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    result = await run_sdk(node, router.url, TOKEN, mode)
    assert result["errors"] == []
    sent = result["sent"]
    assert {m["event"] for m in sent} == {
        "signed up",
        "page viewed",
        "$identify",
        "$groupidentify",
        "$create_alias",
    }
    events = await router.delivered(len(sent))
    assert_delivered_as_sent(sent, events)
    signed_up = next(e for e in events if e.name == "signed up")
    assert signed_up.uuid == "0190f6d2-7c1e-7b3a-9f5e-1c2d3e4f5a6b"
    assert signed_up.data["properties"]["nested"] == {"list": [1, "two", {"three": 3}]}
    assert routes_used(await (await router.client.get("/metrics")).text()) == {route}


async def test_posthog_node_with_an_unknown_token_is_refused(node: str, start_router: StartRouter):
    router = await start_router(posthog=f"{{tokens: [{TOKEN}]}}")
    result = await run_sdk(node, router.url, "phc_someone_else", "v0")
    assert result["errors"], "the SDK should report the 401"
    assert router.metric("rejected", "posthog", "unauthorized") >= 1
    assert router.backend.events == []
