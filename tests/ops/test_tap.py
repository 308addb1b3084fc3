"""The tap: what the pipeline kept or a backend is handed, streamed as JSON lines to an admin;
never what a filter removed; bounded, so a slow reader costs ingest nothing but drops."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import aiohttp
from opsupport import ADMIN_TOKEN, auth
from support import REPO, RouterProcess, free_port

from router.cli import main
from router.event import Event
from router.tap import TAP, Subscriber
from router.tap.hub import Tap


def config(token: bool = True) -> str:
    return f"""
    spool: {{path: ./data/spool.db}}
    admin: {{listen: same{f', token: "{ADMIN_TOKEN}"' if token else ""}}}
    pipeline:
      - {{type: opt_out}}
      - {{type: drop, fields: [hostname]}}
    backends:
      lines:
        type: file
        path: ./data/lines.jsonl
        batch: {{max_wait: 10ms}}
        when: {{field: version, matches: '^2\\.'}}
        filters: [{{type: keep, fields: [installation_id, version]}}]
    """


def own(data: dict) -> dict:
    """The beacon's own fields: without `product`, which the router's source profiles add."""
    return {k: v for k, v in data.items() if k != "product"}


async def tapped(client, query: str, count: int) -> list[dict]:
    """Open a tap, wait until it is subscribed, and return its first ``count`` lines."""
    resp = await client.get(f"/admin/tap?{query}&limit={count}", headers=auth())
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    lines: list[dict] = []
    async for raw in resp.content:
        if raw.strip():
            lines.append(json.loads(raw))
    return lines


async def until_tapped(before: int) -> None:
    """Until a tap more than ``before`` is open (the hub is the process's: count, not flag)."""
    for _ in range(500):
        if TAP.subscribers > before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the tap never subscribed")


async def post(client, body, headers=None) -> None:
    resp = await client.post("/beacon", json=body, headers=headers or {})
    assert resp.status == 202


async def test_the_pipeline_tap_shows_kept_events_after_the_pipeline_never_removed_ones(
        router_client):
    client = await router_client(config())
    before = TAP.subscribers
    reading = asyncio.create_task(tapped(client, "", 2))
    await until_tapped(before)
    await post(client, {"installation_id": "a", "version": "1.0", "hostname": "secret-host"})
    await post(client, {"installation_id": "b", "version": "1.0"}, {"DNT": "1"})  # opted out
    await post(client, {"installation_id": "c", "version": "2.0", "hostname": "h"})

    lines = await asyncio.wait_for(reading, 10)

    assert [own(line["data"]) for line in lines] == [{"installation_id": "a", "version": "1.0"},
                                               {"installation_id": "c", "version": "2.0"}]
    assert all({"uuid", "received_at", "event", "source", "data"} <= set(line)
               <= {"uuid", "received_at", "event", "source", "data", "profile"} for line in lines)
    assert TAP.subscribers == before  # the stream ended: its subscriber is gone


async def test_a_backend_tap_shows_what_it_is_handed_after_its_when_and_filters(router_client):
    client = await router_client(config())
    before = TAP.subscribers
    reading = asyncio.create_task(tapped(client, "backend=lines", 1))
    await until_tapped(before)
    await post(client, {"installation_id": "a", "version": "1.0", "platform": "x"})
    await post(client, {"installation_id": "b", "version": "2.1", "platform": "x"})

    (line,) = await asyncio.wait_for(reading, 10)

    assert line["data"] == {"installation_id": "b", "version": "2.1"}


async def test_when_narrows_the_tap(router_client):
    client = await router_client(config())
    when = json.dumps({"field": "installation_id", "equals": "z"})
    before = TAP.subscribers
    reading = asyncio.create_task(tapped(client, f"when={when}", 1))
    await until_tapped(before)
    for name in ("x", "y", "z"):
        await post(client, {"installation_id": name, "version": "1.0"})

    (line,) = await asyncio.wait_for(reading, 10)

    assert line["data"]["installation_id"] == "z"


async def test_tap_requests_are_guarded_and_checked(router_client):
    client = await router_client(config())
    assert (await client.get("/admin/tap")).status == 401
    for query, status in (("backend=nope", 404), ("limit=0", 400), ("limit=x", 400),
                          ("when={", 400), ('when={"field": "a"}', 400)):
        resp = await client.get(f"/admin/tap?{query}", headers=auth())
        assert resp.status == status, query
        assert set(await resp.json()) == {"error", "detail"}
    off = await router_client(config(token=False))
    assert (await off.get("/admin/tap", headers=auth())).status == 404


def test_a_full_subscriber_drops_and_counts_instead_of_waiting():
    hub = Tap()
    slow = Subscriber("", size=3)
    hub.subscribe(slow)
    events = [Event.new({"n": i}) for i in range(10)]

    hub.publish("", events)
    hub.publish("other-backend", events)  # not its stage: not offered

    assert slow.queue.qsize() == 3 and slow.dropped == 7
    hub.unsubscribe(slow)
    assert not hub.active


async def test_the_tap_command_prints_json_lines_from_a_running_router(tmp_path):
    admin_port = free_port()
    (tmp_path / "router.yaml").write_text(textwrap.dedent(f"""
        spool: {{path: ./data/spool.db}}
        admin: {{listen: "127.0.0.1:{admin_port}", token: "{ADMIN_TOKEN}"}}
        backends:
          lines: {{type: file, path: ./data/lines.jsonl, batch: {{max_wait: 10ms}}}}
        """))
    # The default --delivery process: the backend's tap is relayed from the delivery process.
    router = RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path),
                           args=("--log-format", "json"))
    router.start()
    try:
        await router.wait_ready()
        tap = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "tap", "--config", "router.yaml",
             "--backend", "lines", "--when", "{field: n, in: [3, 4, 5, 6, 7, 8, 9]}",
             "--limit", "3"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": REPO})
        async with aiohttp.ClientSession() as http:
            n = 0
            while tap.poll() is None and n < 2000:  # until the tap has seen three
                async with http.post(f"{router.url}/beacon", json={"n": n % 10}) as resp:
                    assert resp.status == 202
                n += 1
                await asyncio.sleep(0.01)
        out, err = await asyncio.to_thread(tap.communicate, timeout=30)
    finally:
        router.stop()
    assert tap.returncode == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert len(lines) == 3 and all(line["data"]["n"] >= 3 for line in lines)


def test_tap_without_the_admin_api_exits_2_naming_the_key(tmp_path, capsys):
    (tmp_path / "router.yaml").write_text("backends: {out: {type: stdout}}\n")
    assert main(["tap", "--config", str(tmp_path / "router.yaml")]) == 2
    assert "admin.token" in capsys.readouterr().err


async def test_a_router_with_a_tap_open_stops_on_sigterm_and_ends_the_stream(tmp_path):
    admin_port = free_port()
    (tmp_path / "router.yaml").write_text(textwrap.dedent(f"""
        spool: {{path: ./data/spool.db}}
        admin: {{listen: "127.0.0.1:{admin_port}", token: "{ADMIN_TOKEN}"}}
        backends:
          lines: {{type: file, path: ./data/lines.jsonl, batch: {{max_wait: 10ms}}}}
        """))
    router = RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path))
    router.start()
    try:
        await router.wait_ready()
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{admin_port}/admin/tap", headers=auth()) as tap:
            assert tap.status == 200
            async with http.post(f"{router.url}/beacon", json={"n": 1}) as resp:
                assert resp.status == 202
            first = await asyncio.wait_for(tap.content.readline(), 10)
            assert own(json.loads(first)["data"]) == {"n": 1}
            code = await asyncio.to_thread(router.terminate, 20)
            rest = await asyncio.wait_for(tap.content.read(), 10)
        assert code == 0 and rest.strip() == b""
    finally:
        router.stop()
