"""Issue 12's acceptance: every product of the reference document, as its client sends it, through
the shipped config/router.yaml served by a real ``beacon-router serve`` process.

For each product: same path, method, content type, User-Agent and identity field as its client;
the answer is one that client accepts; three beacons of one installation (on three days, where
the payload carries a date) are three archived rows with one non-empty ``distinct_id``; no raw
identifier, hostname, name or licence hash reaches a file under ``data/`` (spool, store, WAL) or
the log; the stats API counts each product's installations.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import REPO, RouterProcess, free_port

FIXTURES = Path(REPO) / "tests" / "fixtures" / "reference"
ADMIN_TOKEN = "acceptance-admin-token-0123456789"


@dataclass(frozen=True)
class Client:
    """One product's client: what it sends, and what it accepts back."""

    product: str
    path: str
    body: bytes
    content_type: str
    user_agent: str | None
    secrets: tuple[str, ...]  # raw identifiers that must never reach the disk or the log
    accepts: tuple[int, ...]
    answer: Any = None  # the JSON (or text) the client needs, when it reads one
    headers: dict[str, str] = field(default_factory=dict)
    day_field: str | None = None  # a date in the payload: each of the three beacons its own day
    method: str = "POST"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


GITLAB_UUID = "8f1c5b7e-3d2a-4c6b-9e1f-2a7d4b6c8e90"
OPERATELY_ID = "5f0b6c1e-8a3d-4f27-9b4e-7c2d1a0e6f38"
POSTHOG_ID = "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a"

CLIENTS = [
    Client("gitlab", "/usage_data", fixture("gitlab.json"), "application/json",
           "GitLab/13.12.0-ee", (GITLAB_UUID, "gitlab.example.com",
                                 "5d41402abc4b2a76b9719d911017c592"),
           accepts=(200, 201, 202), answer={"conv_index": {"usage_data_id": 1}}),
    Client("operately", "/beacon", fixture("operately.json"), "application/json",
           "Operately/1.0.0", (OPERATELY_ID,), accepts=(200,), day_field="timestamp"),
    Client("operately", "/ping", fixture("operately.json"), "application/json", None,
           (OPERATELY_ID,), accepts=(200,), day_field="timestamp"),
    Client("docker", "/beacon", fixture("docker.json"), "application/json",
           "docker/20.10.7 go/go1.13.15 git-commit/f0df350 kernel/5.4.0 os/linux arch/amd64",
           ("3b9e2f4a-6c1d-4e8b-a5f7-0d2c9b8e1a64",), accepts=(200, 201, 202)),
    Client("kubernetes", "/beacon", fixture("kubernetes.yaml"), "application/yaml", None,
           ("d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",), accepts=(200, 201, 202)),
    Client("nextcloud", "/ocs/v2.php/apps/survey_server/api/v1/survey", fixture("nextcloud.json"),
           "application/json", "Nextcloud Server Crawler",
           ("9c4f1e0a7b2d5e8f3a6c9b1d4e7f0a2c5b8d1e4f7a0c3b6d9e2f5a8c1b4d7e0f",), accepts=(200,)),
    Client("prometheus", "/metrics/job/prometheus/instance/prom-7f3a.example.net:9090",
           fixture("prometheus.prom"), "text/plain; version=0.0.4; charset=utf-8",
           "Go-http-client/1.1", ("prom-7f3a.example.net",), accepts=(200, 202)),
    Client("plausible", "/api/event", fixture("plausible.json"), "application/json",
           "Mozilla/5.0 (X11; Linux x86_64)",
           ("2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",),
           accepts=(202,), answer="ok", day_field="timestamp"),
    Client("discourse", "/api/version_check", fixture("discourse.json"), "application/json",
           "Discourse Forum Onebox v2.7.8", ("forum.example.org", "Community Forum"),
           accepts=(200,), headers={"Referer": "https://forum.example.org"}),
    Client("wordpress", "/core/version-check/1.7/", fixture("wordpress.form"),
           "application/x-www-form-urlencoded", "WordPress/5.8.1; https://blog.example.org",
           ("blog.example.org",), accepts=(200,)),
    Client("mastodon", "/api/v1/usage", fixture("mastodon.json"), "application/json",
           "http.rb/5.0.0 (Mastodon/3.4.1; +https://social.example/)",
           ("Example Mastodon", "Community server", "social.example"), accepts=(200, 202)),
    Client("posthog", "/capture/", json.dumps({
        "api_key": "phc_projecttoken", "event": "installation_heartbeat",
        "distinct_id": POSTHOG_ID, "timestamp": "2024-01-01T12:00:00Z",
        "properties": {"version": "1.0.0", "platform": "linux", "deployment_type": "docker",
                       "user_count_range": "1-10"}}).encode(),
           "application/json", "posthog-python/3.5.0", (POSTHOG_ID,), accepts=(200,),
           answer={"status": 1}, day_field="timestamp"),
]


def on_day(client: Client, day: int) -> bytes:
    """The client's body as sent on the ``day``-th day (its date field moved, if it has one)."""
    if client.day_field is None:
        return client.body
    return client.body.replace(b"2024-01-01T12:00:00Z", f"2024-01-0{day}T12:00:00Z".encode())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shipped")
    (path / "config").symlink_to(Path(REPO) / "config")
    return path


@pytest.fixture(scope="module")
def router(workdir: Path) -> Iterator[RouterProcess]:
    """``beacon-router serve --config config/router.yaml`` as a user runs it."""
    admin = free_port()
    proc = RouterProcess("config/router.yaml", free_port(), str(workdir), env={
        "ADMIN_TOKEN": ADMIN_TOKEN, "ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "BEACON_HASH_KEY": "", "POSTHOG_API_KEY": ""})
    proc.admin_url = f"http://127.0.0.1:{admin}"  # type: ignore[attr-defined]
    proc.start()
    try:
        asyncio.run(proc.wait_ready())
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def answers(router: RouterProcess) -> list[tuple[Client, int, int, Any]]:
    """Every client's three beacons, sent once for the module: (client, day, status, body)."""
    return asyncio.run(send_all(router))


async def send_all(router: RouterProcess) -> list[tuple[Client, int, int, Any]]:
    out = []
    async with aiohttp.ClientSession(skip_auto_headers=("User-Agent",)) as http:
        for client in CLIENTS:
            for day in (1, 2, 3):
                headers = {"Content-Type": client.content_type, **client.headers}
                if client.user_agent:
                    headers["User-Agent"] = client.user_agent
                async with http.request(client.method, router.url + client.path,
                                        data=on_day(client, day), headers=headers) as resp:
                    text = await resp.text()
                    body = json.loads(text) if resp.content_type == "application/json" else text
                    out.append((client, day, resp.status, body))
    await archived(router, len(out))
    return out


async def archived(router: RouterProcess, want: int, timeout: float = 30.0
                   ) -> list[tuple[str, str, dict[str, Any]]]:
    """(uuid, distinct_id, data) of every archived row, once ``want`` are there."""
    db = Path(router.workdir) / "data" / "beacons.db"
    rows: list[Any] = []
    for _ in range(int(timeout / 0.1)):
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    rows = conn.execute("SELECT uuid, distinct_id, data FROM beacons").fetchall()
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= want:
                return [(u, d, json.loads(data)) for u, d, data in rows]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(rows)} of {want} acknowledged beacons reached the archive")


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: f"{c.product}{c.path}")
async def test_the_client_gets_an_answer_it_accepts(answers, client):
    for sent, day, status, body in answers:
        if sent is client:
            assert status in client.accepts, (day, body)
            if client.answer is not None:
                assert body == client.answer


@pytest.mark.parametrize("product", sorted({c.product for c in CLIENTS}))
async def test_three_beacons_of_one_installation_are_three_rows_of_one_distinct_id(
        router, answers, product):
    rows = await archived(router, len(answers))
    mine = [(u, d) for u, d, data in rows if data.get("product") == product]
    sent = 3 * sum(c.product == product for c in CLIENTS)
    assert len(mine) == sent
    assert len({u for u, _ in mine}) == sent  # every one its own event
    distinct = {d for _, d in mine}
    assert len(distinct) == 1 and all(distinct), distinct
    assert len(next(iter(distinct))) == 64  # an HMAC, not the raw id


async def test_no_raw_identifier_reaches_a_file_under_data_or_the_log(router, answers, workdir):
    data_files = [p for p in (workdir / "data").rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in data_files)  # the WAL files are searched too
    for path in [*data_files, workdir / "router.log"]:
        content = path.read_bytes()
        for client in CLIENTS:
            for secret in client.secrets:
                assert secret.encode() not in content, f"{secret!r} in {path.name}"


async def test_the_stats_api_counts_each_products_installations(router, answers):
    products = {c.product for c in CLIENTS}
    counted: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # the statistics re-read the store's recent days every few seconds
            async with http.get(f"{router.admin_url}/api/stats", params={"dimension": "product"},
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
                report = await resp.json()
            counted = {b["value"]: b["installations"] for b in report["breakdowns"]["product"]}
            if set(counted) == products:
                break
            await asyncio.sleep(0.2)
    assert counted == {p: 1 for p in products}
    assert report["totals"]["installations"] == len(products)


def test_the_suite_covers_every_shipped_profile():
    shipped = {p.stem for p in (Path(REPO) / "config" / "sources").glob("*.yaml")}
    assert shipped == {c.product for c in CLIENTS}
    assert os.path.exists(FIXTURES / "index.json")
