"""Replays over the admin API of a real loopback server: started, followed, stopped, guarded."""

from __future__ import annotations

import asyncio
from collections import Counter

from opsupport import ADMIN_TOKEN, auth

from router.config.loader import load
from router.event import Event


def config(receiver_url: str, token: bool = True) -> str:
    return f"""
    spool: {{path: ./data/spool.db}}
    admin: {{listen: same{f', token: "{ADMIN_TOKEN}"' if token else ""}}}
    backends:
      archive: {{type: store, url: "sqlite:///data/archive.db", enabled: false}}
      hook:
        type: webhook
        url: "{receiver_url}"
        batch: {{max_events: 50, max_wait: 20ms}}
        retry: {{initial: 10ms, max: 20ms}}
    """


async def fill(n: int) -> list[str]:
    store = load("router.yaml").backends["archive"].build()
    events = [Event.new({"installation_id": f"i-{i}", "version": "1.0.0"},
                        received_at=f"2026-10-{1 + i % 28:02d}T00:00:00.000Z") for i in range(n)]
    assert (await store.send(events)).ok
    await store.aclose()
    return [e.uuid for e in events]


async def finished(client, job_id: str) -> dict:
    """The job's state once it is no longer running."""
    for _ in range(1000):
        state = await (await client.get(f"/admin/replays/{job_id}", headers=auth())).json()
        if not state["running"]:
            return state
        await asyncio.sleep(0.02)
    raise AssertionError("the replay never finished")


async def test_a_replay_started_over_the_admin_api_delivers_each_archived_event_once(
        router_client, receiver):
    client = await router_client(config(receiver.url))
    uuids = await fill(300)

    resp = await client.post("/admin/replays", json={"from": "archive", "to": "hook"},
                             headers=auth())
    assert resp.status == 202
    job = await resp.json()
    assert job["selection"] == {"source": "archive", "target": "hook", "since": None,
                                "until": None, "where": None}

    state = await finished(client, job["id"])
    assert state["done"] and state["delivered"] == 300 and state["error"] is None
    assert Counter(e["uuid"] for e in receiver.events) == Counter(uuids)
    listed = await (await client.get("/admin/replays", headers=auth())).json()
    assert [r["id"] for r in listed["replays"]] == [job["id"]]

    # Started again, the same job is finished: nothing is sent twice.
    again = await client.post("/admin/replays", json={"from": "archive", "to": "hook"},
                              headers=auth())
    assert again.status == 202
    assert (await finished(client, job["id"]))["done"]
    assert len(receiver.events) == 300


async def test_dry_run_over_the_admin_api_counts_without_sending(router_client, receiver):
    client = await router_client(config(receiver.url))
    await fill(40)

    resp = await client.post("/admin/replays", headers=auth(), json={
        "from": "archive", "to": "hook", "dry_run": True,
        "where": {"field": "installation_id", "in": ["i-1", "i-2", "i-3"]}})
    job = await finished(client, (await resp.json())["id"])

    assert (job["scanned"], job["matched"], job["delivered"], job["dry_run"]) == (40, 3, 3, True)
    assert receiver.events == []


async def test_bad_requests_are_400_with_a_reason(router_client, receiver):
    client = await router_client(config(receiver.url))
    for body, detail in (
        (b"{", "the body is"),
        (b'{"from": "archive"}', "the body is"),
        (b'{"from": "archive", "to": "hook", "extra": 1}', "the body is"),
        (b'{"from": 1, "to": "hook"}', "strings"),
        (b'{"from": "hook", "to": "archive"}', "type: store"),
        (b'{"from": "archive", "to": "hook", "where": {"field": "x"}}', "--where"),
        (b'{"from": "archive", "to": "hook", "since": "yesterday"}', "since"),
    ):
        resp = await client.post("/admin/replays", data=body, headers=auth())
        assert resp.status == 400, body
        answer = await resp.json()
        assert answer["error"] == "bad_request" and detail in answer["detail"], (body, answer)
    assert (await client.get("/admin/replays/nope", headers=auth())).status == 404


async def test_replay_endpoints_need_the_admin_token(router_client, receiver):
    client = await router_client(config(receiver.url))
    assert (await client.post("/admin/replays", json={"from": "archive", "to": "hook"})
            ).status == 401
    assert (await client.get("/admin/replays")).status == 401
    off = await router_client(config(receiver.url, token=False))
    assert (await off.get("/admin/replays", headers=auth())).status == 404
