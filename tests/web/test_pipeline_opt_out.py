"""A source profile with ``pipeline: false`` skips the global pipeline; every other one runs it.

Through a real loopback server and a real SQLite spool. (The opted-out pipeline has no steps,
so it is falsy: make_durable once read ``pipeline or router.pipeline`` and ran the global one.)
"""

from __future__ import annotations

import sqlite3

import orjson
from support import REPO

from router.config.loader import loads
from router.web.app import create_app

CONFIG = """
spool: {path: ./data/spool.db}
pipeline:
  - {type: drop, fields: [secret]}
sources:
  profiles:
    - {name: raw, paths: [/raw], pipeline: false}
    - {name: app, paths: [/beacon]}
"""


async def test_a_profile_with_pipeline_false_skips_the_global_pipeline(
        tmp_path, monkeypatch, aiohttp_client) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").symlink_to(f"{REPO}/config")
    client = await aiohttp_client(create_app(loads(CONFIG)))
    for path in ("/raw", "/beacon"):
        resp = await client.post(path, json={"secret": "s", "path": path})
        assert resp.status in (200, 202), await resp.text()
    rows = sqlite3.connect("data/spool.db").execute("SELECT body FROM events").fetchall()
    data = {e["data"]["path"]: e["data"] for e in (orjson.loads(r[0]) for r in rows)}
    assert data["/raw"]["secret"] == "s"  # (profiles add their product's name)
    assert "secret" not in data["/beacon"]


async def test_the_beacon_handler_hands_its_user_agent_to_the_pipeline(
        tmp_path, monkeypatch, aiohttp_client) -> None:
    # (beacon.py reads the header once and passes it to request_context)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").symlink_to(f"{REPO}/config")
    config = loads("spool: {path: ./data/spool.db}\npipeline:\n  - {type: user_agent}\n")
    client = await aiohttp_client(create_app(config))
    agent = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/120.0.0.0 Safari/537.36")
    resp = await client.post("/beacon", json={"n": 1}, headers={"User-Agent": agent})
    assert resp.status == 202, await resp.text()
    [(body,)] = sqlite3.connect("data/spool.db").execute("SELECT body FROM events").fetchall()
    client_fields = orjson.loads(body)["data"]["client"]
    assert client_fields["browser"] == "Chrome" and client_fields["os"] == "Linux"
