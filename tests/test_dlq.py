"""The dead-letter queue end to end: a backend refuses events, ops list, replay and purge them
with the real `beacon-router dlq` command while the router runs."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
import pytest
from aiohttp import web
from support import REPO, free_port, until

CONFIG = """
spool: {{path: ./spool.db}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    batch: {{max_events: 10, max_wait: 20ms}}
    retry: {{initial: 20ms, max: 100ms}}
"""


class Receiver:
    """Answers 400 (permanent) until told to accept; records what it accepted."""

    def __init__(self) -> None:
        self.accepting = False
        self.uuids: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not self.accepting:
            return web.json_response({"error": "schema mismatch"}, status=400)
        self.uuids.extend(e["uuid"] for e in body["events"])
        return web.Response(status=204)


class Done:
    """What a finished command printed."""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout.decode(), stderr.decode()


async def cli(workdir, *args: str) -> Done:
    """Run `beacon-router ARGS --config router.yaml` without blocking the test's event loop
    (the webhook receiver lives on it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", *args, "--config", "router.yaml", cwd=workdir,
        env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Done(proc.returncode or 0, out, err)




@pytest.fixture
async def setup(router_process, aiohttp_server, tmp_path):
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    router = router_process(CONFIG.format(port=server.port), port=free_port())
    router.start()
    await router.wait_ready()
    return router, receiver, tmp_path


async def post(router, n: int) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(n):
            async with http.post(f"{router.url}/beacon", json={"i": i}) as resp:
                assert resp.status == 202


async def test_refused_events_are_listed_replayed_and_delivered(setup):
    router, receiver, workdir = setup
    await post(router, 3)

    async def three_dead() -> bool:
        return (await cli(workdir, "dlq", "list", "--backend", "hook")).stdout.count("\n") == 3

    await until(three_dead)
    listing = (await cli(workdir, "dlq", "list", "--backend", "hook")).stdout
    assert "HTTP 400" in listing and "attempts=1" in listing
    shown = (await cli(workdir, "dlq", "show", "--backend", "hook", "--limit", "1")).stdout
    assert '"event"' in shown and '"uuid"' in shown
    # --output json: one document a script parses, the same entries as the table
    listed = json.loads((await cli(workdir, "dlq", "list", "--backend", "hook", "-o", "json")
                         ).stdout)
    assert len(listed) == 3 and {"id", "failed_at", "attempts", "reason"} == set(listed[0])
    assert "HTTP 400" in listed[0]["reason"] and listed[0]["attempts"] == 1
    shown_json = json.loads((await cli(workdir, "dlq", "show", "--backend", "hook", "--id",
                                       str(listed[0]["id"]), "--output", "json")).stdout)
    assert [e["id"] for e in shown_json] == [listed[0]["id"]]
    assert set(shown_json[0]["event"]) >= {"uuid", "data"}
    status = json.loads((await cli(workdir, "status", "--output", "json")).stdout)
    assert status["backends"]["hook"]["dead_letters"] == 3
    assert status["backends"]["hook"]["configured"] is True

    receiver.accepting = True
    replay = await cli(workdir, "dlq", "replay", "--backend", "hook")
    assert replay.returncode == 0 and "replayed 3 events" in replay.stdout

    async def delivered() -> bool:
        return len(receiver.uuids) == 3

    await until(delivered)
    assert (await cli(workdir, "dlq", "list", "--backend", "hook")).stdout == ""
    status = await cli(workdir, "status")
    assert status.returncode == 0 and "hook" in status.stdout


async def test_purge_deletes_only_the_chosen_dead_letters(setup):
    router, _, workdir = setup
    await post(router, 2)

    async def two_dead() -> bool:
        return (await cli(workdir, "dlq", "list", "--backend", "hook")).stdout.count("\n") == 2

    await until(two_dead)
    first_id = (await cli(workdir, "dlq", "list", "--backend", "hook")).stdout.split("\t")[0]
    purge = await cli(workdir, "dlq", "purge", "--backend", "hook", "--id", first_id)
    assert purge.returncode == 0 and "purged 1" in purge.stdout
    remaining = (await cli(workdir, "dlq", "list", "--backend", "hook")).stdout
    assert remaining.count("\n") == 1 and not remaining.startswith(first_id + "\t")


async def test_replay_for_a_backend_that_is_not_configured_is_refused(tmp_path):
    (tmp_path / "router.yaml").write_text(CONFIG.format(port=9))
    result = await cli(tmp_path, "dlq", "replay", "--backend", "nope")
    assert result.returncode == 2 and "not an enabled backend" in result.stderr
