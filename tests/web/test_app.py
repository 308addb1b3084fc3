"""POST /beacon and friends through a real loopback server, a real SQLite spool and store."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sqlite3
import uuid
from pathlib import Path

import orjson
import pytest
import zstandard
from aiohttp import web
from support import REPO

from router.config.loader import load, loads
from router.web.app import ROUTER, create_app

REFERENCE = Path(REPO) / "tests" / "fixtures" / "reference"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run from a scratch directory that sees the repo's config/ (schemas), with its own data/."""
    (tmp_path / "config").symlink_to(Path(REPO) / "config")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEACON_HASH_KEY", "a-test-hash-key-of-32-characters!")
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    return tmp_path


@pytest.fixture
async def shipped(in_tmp, aiohttp_client):
    """A client of the router running the shipped config/router.yaml."""
    app = create_app(load("config/router.yaml"))
    client = await aiohttp_client(app)
    client.data = in_tmp / "data"
    return client


async def stored_rows(data_dir: Path, want: int, timeout: float = 15.0) -> list[dict]:
    """The archive store's rows, once at least ``want`` are there."""
    db = data_dir / "beacons.db"
    for _ in range(int(timeout / 0.05)):
        if db.exists():
            try:
                rows = sqlite3.connect(db).execute("SELECT data FROM beacons").fetchall()
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= want:
                return [json.loads(r[0]) for r in rows]
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {want} rows reached the store")


OPERATELY = {"installation_id": "2f1c7c1e-8a5b-4e8e-9d7a-3b1f0c2d4e5f", "version": "1.4.2",
             "platform": {"os": "linux", "architecture": "x86_64"},
             "deployment_type": "docker", "counts": {"users": 37},
             "hostname": "ops.example.com", "timestamp": "2026-11-28T00:17:42Z"}


async def test_beacon_is_accepted_made_private_and_stored(shipped):
    resp = await shipped.post("/beacon", json=OPERATELY)
    assert resp.status == 202
    assert await resp.json() == {"accepted": 1}
    [row] = await stored_rows(shipped.data, 1)
    data = row.get("data", row)
    assert data["version"] == "1.4.2"
    assert data["installation_id"] != OPERATELY["installation_id"]  # keyed hash
    assert len(data["installation_id"]) >= 16
    assert "hostname" not in data
    assert data["counts"]["users"] == "11-50"


async def test_client_ip_is_written_nowhere(shipped):
    await shipped.post("/beacon", json=OPERATELY)
    await stored_rows(shipped.data, 1)
    for path in shipped.data.iterdir():
        assert b"127.0.0.1" not in path.read_bytes(), path.name


async def test_a_beacons_own_uuid_field_never_becomes_its_event_uuid(in_tmp, aiohttp_client):
    client = await aiohttp_client(create_app(loads("spool: {path: ./data/spool.db}\n")))
    same = str(uuid.uuid4())  # GitLab's `uuid`: the installation's, on every ping
    resp = await client.post("/beacon", json=[{"uuid": same, "a": 1}, {"uuid": same, "a": 2},
                                              {"a": 3}])
    assert resp.status == 202 and (await resp.json()) == {"accepted": 3}
    rows = sqlite3.connect("data/spool.db").execute("SELECT body FROM events").fetchall()
    events = [orjson.loads(r[0]) for r in rows]
    assert same not in {e["uuid"] for e in events}
    assert len({e["uuid"] for e in events}) == 3


async def test_a_profiles_event_id_becomes_the_event_uuid_when_valid(in_tmp, aiohttp_client):
    config = ("spool: {path: ./data/spool.db}\n"
              "sources: {profiles: [{name: app, paths: [/beacon], event_id: uuid}]}\n")
    client = await aiohttp_client(create_app(loads(config)))
    mine = str(uuid.uuid4())
    resp = await client.post("/beacon", json=[{"uuid": mine, "a": 1}, {"uuid": "nope", "a": 2},
                                              {"a": 3}])
    assert resp.status == 202 and (await resp.json()) == {"accepted": 3}
    router = client.app[ROUTER]
    rows = sqlite3.connect("data/spool.db").execute("SELECT body FROM events").fetchall()
    events = [orjson.loads(r[0]) for r in rows]
    assert events[0]["uuid"] == mine
    assert all(uuid.UUID(e["uuid"]) for e in events)
    assert len({e["uuid"] for e in events}) == 3
    assert all(e["received_at"].endswith("Z") and e["profile"] == "app" for e in events)
    assert router.metrics.value(router.metrics.accepted, "beacon") == 3


@pytest.mark.parametrize("name", sorted(json.loads((REFERENCE / "index.json").read_text())))
async def test_every_reference_payload_is_accepted_and_stored_structured(shipped, name):
    content_type = json.loads((REFERENCE / "index.json").read_text())[name]
    body = (REFERENCE / name).read_bytes()
    resp = await shipped.post("/beacon", data=body, headers={"Content-Type": content_type})
    # 202, or what the profile recognised by its shape answers (Plausible: 202 "ok")
    assert resp.status == 202, await resp.text()
    sent = json.loads(body) if content_type == "application/json" else None
    rows = await stored_rows(shipped.data, len(sent) if isinstance(sent, list) else 1)
    assert all(isinstance(r, dict) and r for r in rows)


async def test_gzip_body_is_accepted(shipped):
    body = gzip.compress(orjson.dumps(OPERATELY))
    resp = await shipped.post("/beacon", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status == 202


async def test_zstd_body_is_accepted_and_stored(shipped):
    body = zstandard.ZstdCompressor().compress(orjson.dumps(OPERATELY))
    resp = await shipped.post("/beacon", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "zstd"})
    assert resp.status == 202, await resp.text()
    (row,) = await stored_rows(shipped.data, 1)
    assert row["version"] == OPERATELY["version"]


async def test_zstd_bomb_is_refused_with_413(shipped):
    bomb = zstandard.ZstdCompressor().compress(b'{"a": "' + b"0" * (64 << 20) + b'"}')
    resp = await shipped.post("/beacon", data=bomb, headers={
        "Content-Type": "application/json", "Content-Encoding": "zstd"})
    assert resp.status == 413 and (await resp.json())["error"] == "payload_too_large"


async def test_do_not_track_drops_the_event_and_counts_it(shipped):
    resp = await shipped.post("/beacon", json=OPERATELY, headers={"DNT": "1"})
    assert resp.status == 202
    metrics = await (await shipped.get("/metrics")).text()
    assert 'beacon_router_events_dropped_total{filter="opt_out",reason="opted_out",' \
           'stage="pipeline"} 1.0' in metrics
    assert not (shipped.data / "beacons.db").exists() or not sqlite3.connect(
        shipped.data / "beacons.db").execute("SELECT count(*) FROM beacons").fetchone()[0]


MALFORMED = [
    ("bad json", b'{"a": ', "application/json", {}, 400),
    ("not an object", b'"hello"', "application/json", {}, 400),
    ("array of numbers", b"[1, 2]", "application/json", {}, 400),
    ("empty body", b"", "application/json", {}, 400),
    ("empty array", b"[]", "application/json", {}, 400),
    ("too deep", b'{"a":' * 100 + b"1" + b"}" * 100, "application/json", {}, 400),
    ("too many events", orjson.dumps([{"i": i} for i in range(1001)]), "application/json", {},
     400),
    ("invalid utf-8", b'{"a": "\xff\xfe"}', "application/json", {}, 400),
    ("too large", b'{"a": "' + b"x" * (2 << 20) + b'"}', "application/json", {}, 413),
    ("gzip bomb", gzip.compress(b'{"a": "' + b"0" * (64 << 20) + b'"}'), "application/json",
     {"Content-Encoding": "gzip"}, 413),
    ("corrupt gzip", b"\x1f\x8b\x08\x00garbage", "application/json",
     {"Content-Encoding": "gzip"}, 400),
    ("unknown encoding", b"{}", "application/json", {"Content-Encoding": "br"}, 415),
    ("unknown content type", b"<xml/>", "application/xml", {}, 415),
    ("yaml with python tag", b"!!python/object/apply:os.system ['true']", "application/yaml",
     {}, 400),
    ("bad prometheus", b"metric{ 1", "text/plain; version=0.0.4", {}, 400),
]


@pytest.mark.parametrize(("body", "content_type", "headers", "status"),
                         [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_input_gets_a_clear_4xx_json_error(shipped, body, content_type,
                                                          headers, status):
    resp = await shipped.post("/beacon", data=body,
                              headers={"Content-Type": content_type, **headers})
    assert resp.status == status
    error = await resp.json()
    assert set(error) == {"error", "detail"} and error["detail"]
    assert "Traceback" not in error["detail"]


async def test_unknown_path_and_wrong_method_answer_json(shipped):
    resp = await shipped.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await shipped.get("/beacon")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]


async def test_health_readiness_and_metrics(shipped):
    assert (await shipped.get("/healthz")).status == 200
    ready = await shipped.get("/readyz")
    body = await ready.json()
    assert ready.status == 200 and body["spool_writable"] and "archive" in body["backends"]
    metrics = await shipped.get("/metrics")
    assert metrics.status == 200
    assert "beacon_router_events_received_total" in await metrics.text()


async def test_full_spool_answers_503_with_retry_after(in_tmp, aiohttp_client):
    config = loads("spool: {path: ./data/spool.db, max_size: 64KiB, when_full: reject}\n"
                   "backends:\n  held: {type: router.testing:MockBackend, enabled: true,"
                   " when: {field: never, exists: true}}\n")
    client = await aiohttp_client(create_app(config))
    statuses = []
    for i in range(400):
        resp = await client.post("/beacon", json={"i": i, "pad": "x" * 400})
        statuses.append(resp.status)
        if resp.status == 503:
            assert int(resp.headers["Retry-After"]) > 0
            assert (await resp.json())["error"] == "unavailable"
            break
    assert statuses[-1] == 503 and set(statuses[:-1]) == {202}


class _Hang:
    """A webhook receiver that never answers (until the test ends)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(status=200)


async def test_a_hung_backend_delays_neither_ingest_nor_another_backend(
        in_tmp, aiohttp_client, aiohttp_server):
    hang = _Hang()
    hung_app = web.Application()
    hung_app.router.add_post("/", hang.handle)
    got: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        got.extend(e["uuid"] for e in (await request.json())["events"])
        return web.Response(status=200)

    ok_app = web.Application()
    ok_app.router.add_post("/", ok)
    hung, good = await aiohttp_server(hung_app), await aiohttp_server(ok_app)
    config = loads(f"""
spool: {{path: ./data/spool.db}}
backends:
  hung: {{type: webhook, url: "http://127.0.0.1:{hung.port}/", timeout: 60s,
          batch: {{max_events: 1, max_wait: 10ms}}}}
  good: {{type: webhook, url: "http://127.0.0.1:{good.port}/",
          batch: {{max_events: 10, max_wait: 10ms}}}}
""")
    client = await aiohttp_client(create_app(config))
    sent = []
    for i in range(20):
        resp = await client.post("/beacon", json={"i": i})
        assert resp.status == 202
    rows = sqlite3.connect("data/spool.db").execute("SELECT body FROM events").fetchall()
    sent = [orjson.loads(r[0])["uuid"] for r in rows]
    for _ in range(200):
        if set(sent) <= set(got):
            break
        await asyncio.sleep(0.05)
    assert set(sent) <= set(got), "the good backend waited on the hung one"
    assert await client.app[ROUTER].spool.depth("hung") == 20  # nothing acked there
    hang.release.set()


def test_no_test_leaves_data_in_the_repo():
    assert not os.path.exists(os.path.join(REPO, "data", "spool.db-journal"))


async def test_a_retry_after_503_is_not_dropped_as_a_duplicate(in_tmp, aiohttp_client):
    config = loads("spool: {path: ./data/spool.db, max_size: 64KiB, when_full: reject}\n"
                   "pipeline:\n  - {type: dedupe, fields: [installation_id], window: 24h}\n"
                   "backends:\n  held: {type: router.testing:MockBackend,"
                   " when: {field: never, exists: true}}\n")
    client = await aiohttp_client(create_app(config))
    for i in range(400):  # fill the spool until it refuses
        resp = await client.post("/beacon", json={"installation_id": f"filler-{i}",
                                                  "pad": "x" * 400})
        if resp.status == 503:
            break
    assert resp.status == 503
    refused = {"installation_id": "the-one", "pad": "x" * 400}
    assert (await client.post("/beacon", json=refused)).status == 503
    spool = client.app[ROUTER].spool
    spool.max_size = None  # space again: the client's retry must be stored, not deduped
    assert (await client.post("/beacon", json=refused)).status == 202
    rows = sqlite3.connect("data/spool.db").execute("SELECT body FROM events").fetchall()
    assert any(b"the-one" in r[0] for r in rows)
