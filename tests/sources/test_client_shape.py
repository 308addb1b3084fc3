"""The webhook's client formats through the shipped profiles and privacy pipeline: an internal
receiver gets a GitLab usage ping in GitLab's own shape, as the pipeline left it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from aiohttp import web
from support import REPO, until

from router.config.loader import loads
from router.web.app import create_app

GITLAB = (Path(REPO) / "tests/fixtures/reference/gitlab.json").read_bytes()
HASH_KEY = "a-test-hash-key-of-32-characters!"


async def test_a_gitlab_ping_reaches_a_single_format_webhook_in_gitlabs_shape(
    aiohttp_server, aiohttp_client, tmp_path, monkeypatch
):
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    shipped = yaml.safe_load((Path(REPO) / "config/router.yaml").read_text())
    shipped["backends"] = {"internal": {"type": "webhook", "format": "single",
                                        "url": str(server.make_url("/hook")),
                                        "batch": {"max_wait": "50ms"}}}
    shipped["spool"]["path"] = str(tmp_path / "spool.db")
    monkeypatch.chdir(REPO)  # the shipped config names config/sources/*.yaml and its schema
    config = loads(yaml.safe_dump(shipped), "router.yaml",
                   env={"BEACON_HASH_KEY": HASH_KEY, "ADMIN_TOKEN": ""})
    client = await aiohttp_client(create_app(config))

    resp = await client.post("/usage_data", data=GITLAB, headers={
        "Content-Type": "application/json", "User-Agent": "GitLab/13.12.0-ee"})
    assert resp.status == 200

    await until(lambda: received)
    [ping] = received
    sent = json.loads(GITLAB)
    # GitLab's own field names, not the common ones the profile mapped them to.
    assert "installation_id" not in ping and "product" not in ping
    assert ping["installation_type"] == sent["installation_type"]
    assert ping["version"] == sent["version"]
    # What the privacy pipeline did stays done: the id hashed, hostname and licence hash gone.
    assert re.fullmatch(r"[0-9a-f]{64}", ping["uuid"])
    assert "hostname" not in ping and "license_md5" not in ping
    assert ping["counts"]["issues"] != sent["counts"]["issues"]  # bucketed into a range
