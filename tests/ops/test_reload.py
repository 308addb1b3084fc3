"""Config reload: refused when invalid, applied without losing a request or an event when valid,
by POST /admin/reload in process and by SIGHUP to a real ``beacon-router serve``."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path

import aiohttp
from aiohttp import web
from opsupport import ADMIN_TOKEN, Receiver, auth, file_events, metric, scrape
from support import free_port, until

BEACON = {"installation_id": "inst-1", "version": "1.0.0"}


def config(*, backends: str, extra: str = "", pipeline: str = "[]") -> str:
    return (
        textwrap.dedent(f"""
    spool: {{path: ./data/spool.db}}
    admin: {{listen: same, token: "{ADMIN_TOKEN}"}}
    pipeline: {pipeline}
    backends:
    """)
        + textwrap.indent(textwrap.dedent(backends), "  ")
        + textwrap.dedent(extra)
    )


FILE_A = """
a: {type: file, path: ./data/a.jsonl, batch: {max_wait: 20ms}}
"""
FILE_B = """
b: {type: file, path: ./data/b.jsonl, batch: {max_wait: 20ms}}
"""


async def reload(client) -> tuple[int, dict]:
    resp = await client.post("/admin/reload", headers=auth())
    return resp.status, await resp.json()


def rewrite(tmp_path: Path, text: str) -> None:
    (tmp_path / "router.yaml").write_text(text)


async def test_an_invalid_file_is_refused_and_the_running_config_stays(router_client, tmp_path):
    client = await router_client(config(backends=FILE_A))
    rewrite(tmp_path, config(backends=FILE_A) + "bogus: 1\n")
    status, body = await reload(client)
    assert status == 422
    assert body["ok"] is False and body["error"] == "config_invalid"
    assert any("router.yaml:" in e and "bogus: unknown key" in e for e in body["errors"])
    assert (await client.post("/beacon", json=BEACON)).status == 202
    await until(lambda: len(file_events(tmp_path / "data" / "a.jsonl")) == 1)
    text = await scrape(client)
    assert metric(text, "beacon_router_config_reloads_total", result="failure") == 1
    assert metric(text, "beacon_router_config_last_reload_successful") == 0
    status = await (await client.get("/admin/status", headers=auth())).json()
    assert status["last_reload"]["ok"] is False


async def test_a_valid_file_adds_removes_and_changes_backends(router_client, tmp_path):
    client = await router_client(config(backends=FILE_A))
    rewrite(tmp_path, config(backends=FILE_B, pipeline="[{type: set, fields: {tag: v2}}]"))
    status, body = await reload(client)
    assert status == 200, body
    assert (body["added"], body["removed"], body["changed"]) == (["b"], ["a"], [])
    assert (await client.post("/beacon", json=BEACON)).status == 202
    await until(lambda: len(file_events(tmp_path / "data" / "b.jsonl")) == 1)
    assert file_events(tmp_path / "data" / "b.jsonl")[0]["data"]["tag"] == "v2"  # new pipeline
    assert file_events(tmp_path / "data" / "a.jsonl") == []
    text = await scrape(client)
    assert metric(text, "beacon_router_config_reloads_total", result="success") == 1
    assert metric(text, "beacon_router_config_last_reload_successful") == 1


async def test_an_untouched_backend_is_not_restarted(router_client, tmp_path):
    """Backends hold the config's source profiles: equal profiles from a re-read file are not
    a change (a restart would send its in-flight batch again for nothing)."""
    client = await router_client(config(backends=FILE_A))
    status, body = await reload(client)  # the same file
    assert status == 200 and body["changed"] == [], body
    rewrite(tmp_path, config(backends=FILE_A + FILE_B))
    status, body = await reload(client)
    assert (body["added"], body["removed"], body["changed"]) == (["b"], [], []), body


async def test_a_removed_backends_queue_is_kept_until_it_is_added_again(
    router_client, receiver, tmp_path
):
    receiver.status = 503
    hook = (
        f'hook: {{type: webhook, url: "{receiver.url}", batch: {{max_wait: 20ms}}, '
        "retry: {initial: 10ms, max: 20ms}}\n"
    )
    client = await router_client(config(backends=FILE_A + hook))
    assert (await client.post("/beacon", json=[BEACON, BEACON])).status == 202
    await until(lambda: receiver.attempts >= 1)
    rewrite(tmp_path, config(backends=FILE_A))
    assert (await reload(client))[1]["removed"] == ["hook"]
    backends = (await (await client.get("/admin/backends", headers=auth())).json())["backends"]
    assert backends["hook"] == {
        "type": None,
        "configured": False,
        "enabled": False,
        "running": False,
        "queued": 2,
        "dead_letters": 0,
    }
    receiver.status = 200
    rewrite(tmp_path, config(backends=FILE_A + hook))
    assert (await reload(client))[1]["added"] == ["hook"]
    await until(lambda: len(receiver.events) == 2)


async def test_a_changed_backend_sends_again_what_its_old_worker_held_unacked(
    router_client, receiver, aiohttp_server, tmp_path
):
    receiver.status = 503  # the old worker holds the batch, retrying, and never succeeds
    fixed = Receiver()
    app = web.Application()
    app.router.add_post("/hook", fixed.handle)
    fixed_url = str((await aiohttp_server(app)).make_url("/hook"))

    def hook(url: str) -> str:
        return (
            f'hook: {{type: webhook, url: "{url}", batch: {{max_wait: 20ms}}, '
            "retry: {initial: 10ms, max: 20ms}}\n"
        )

    client = await router_client(config(backends=hook(receiver.url)))
    assert (await client.post("/beacon", json=[BEACON, BEACON])).status == 202
    await until(lambda: receiver.attempts >= 1)
    rewrite(tmp_path, config(backends=hook(fixed_url)))  # the vendor moved: ops fix the URL
    assert (await reload(client))[1]["changed"] == ["hook"]
    await until(lambda: len(fixed.events) == 2)


async def test_settings_bound_at_start_are_reported_and_kept_until_restart(router_client, tmp_path):
    client = await router_client(config(backends=FILE_A))
    text = config(backends=FILE_A).replace("./data/spool.db", "./data/other.db")
    rewrite(tmp_path, text + "server: {listen: '127.0.0.1:1'}\n")
    status, body = await reload(client)
    assert status == 200
    assert body["restart_required"] == ["server.listen", "spool"]
    assert (await client.post("/beacon", json=BEACON)).status == 202
    assert not (tmp_path / "data" / "other.db").exists()
    status = await (await client.get("/admin/status", headers=auth())).json()
    assert status["config"]["restart_required"] == ["server.listen", "spool"]


async def test_reloading_under_load_loses_no_request_and_no_event(router_client, tmp_path):
    # Each reload changes backend `a` (its batch size) and the pipeline, so its worker is
    # stopped and started again while requests keep coming.
    variants = [
        config(
            backends=FILE_A.replace("max_wait: 20ms", f"max_wait: 20ms, max_events: {n}"),
            pipeline=f"[{{type: set, fields: {{round: {n}}}}}]",
        )
        for n in (7, 13)
    ]
    client = await router_client(variants[0])
    total, statuses = 0, []

    async def send(i: int) -> None:
        resp = await client.post(
            "/beacon", json=[{**BEACON, "installation_id": f"i-{i}-{k}"} for k in range(3)]
        )
        statuses.append(resp.status)

    async def reloads() -> None:
        for n in range(6):
            rewrite(tmp_path, variants[(n + 1) % 2])
            status, body = await reload(client)
            assert status == 200 and body["changed"] == ["a"], body
            await asyncio.sleep(0)

    senders = [send(i) for i in range(150)]
    await asyncio.gather(reloads(), *senders)
    total = 150 * 3
    assert statuses == [202] * 150
    path = tmp_path / "data" / "a.jsonl"
    await until(
        lambda: len({e["data"]["installation_id"] for e in file_events(path)}) == total, timeout=20
    )


def process_config(admin_port: int, backends: str, tail: str = "") -> str:
    return (
        textwrap.dedent(f"""
    spool: {{path: ./data/spool.db}}
    admin: {{token: "{ADMIN_TOKEN}", listen: "127.0.0.1:{admin_port}"}}
    backends:
    """)
        + textwrap.indent(textwrap.dedent(backends), "  ")
        + tail
    )


async def test_sighup_reloads_a_running_router_and_refuses_an_invalid_file(
    router_process, tmp_path
):
    admin_port = free_port()
    router = router_process(process_config(admin_port, FILE_A))
    router.start()
    await router.wait_ready()
    admin = f"http://127.0.0.1:{admin_port}"
    async with aiohttp.ClientSession() as http:

        async def last_reload() -> dict | None:
            async with http.get(f"{admin}/admin/status", headers=auth()) as resp:
                return (await resp.json())["last_reload"]

        async def sighup_and_wait(previous: dict | None) -> dict:
            router.proc.send_signal(signal.SIGHUP)
            for _ in range(500):
                if (result := await last_reload()) != previous:
                    return result
                await asyncio.sleep(0.02)
            raise AssertionError(f"no reload seen:\n{router.logs()}")

        # The admin API has its own port; the ingest port does not serve it.
        async with http.get(f"{router.url}/admin/status", headers=auth()) as resp:
            assert resp.status == 404
        assert await last_reload() is None

        (tmp_path / "router.yaml").write_text(process_config(admin_port, FILE_A + FILE_B))
        first = await sighup_and_wait(None)
        assert first["ok"] and first["added"] == ["b"], first
        async with http.post(f"{router.url}/beacon", json=BEACON) as resp:
            assert resp.status == 202
        await until(lambda: len(file_events(tmp_path / "data" / "b.jsonl")) == 1)

        (tmp_path / "router.yaml").write_text(process_config(admin_port, FILE_A, "bogus: 1\n"))
        second = await sighup_and_wait(first)
        assert not second["ok"]
        assert any("bogus: unknown key" in e for e in second["errors"])
        async with http.post(f"{router.url}/beacon", json=BEACON) as resp:
            assert resp.status == 202  # still serving, with the config it had
        await until(lambda: len(file_events(tmp_path / "data" / "b.jsonl")) == 2)
        async with http.get(f"{router.url}/metrics") as resp:
            text = await resp.text()
        assert metric(text, "beacon_router_config_reloads_total", result="success") == 1
        assert metric(text, "beacon_router_config_reloads_total", result="failure") == 1
        assert metric(text, "beacon_router_config_last_reload_successful") == 0
    assert router.terminate() == 0
    assert "config reload refused" in router.logs()


async def test_a_profiles_answer_changes_at_once_and_a_new_path_waits_for_a_restart(
    router_client, tmp_path
):
    mine = ("sources: {{profiles: [{{name: app, paths: [/beacon{more}], "
            "answer: {{status: {s}}}}}]}}\n")
    client = await router_client(config(backends=FILE_A) + mine.format(more="", s=202))
    rewrite(tmp_path, config(backends=FILE_A) + mine.format(more=", /ping", s=200))
    status, body = await reload(client)
    assert status == 200
    assert body["restart_required"] == [
        "the paths of sources profiles (new ones are served after a restart)"]
    assert (await client.post("/beacon", json=BEACON)).status == 200  # the new answer
    assert (await client.post("/ping", json=BEACON)).status == 404  # until a restart
