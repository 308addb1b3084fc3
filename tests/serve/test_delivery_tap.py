"""A backend's tap under the default ``serve --delivery process``: the ingest process's
``/admin/tap`` relays the stream the delivery process serves on its unix socket
(router/tap/proxy.py). Real router subprocesses on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap

import aiohttp
import pytest
from support import RouterProcess, free_port, until

TOKEN = "admin-token-for-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = textwrap.dedent(f"""
    spool: {{path: ./spool.db}}
    server: {{drain_delay: 0s}}
    admin: {{token: {TOKEN}, listen: same}}
    backends:
      lines:
        type: file
        path: ./lines.jsonl
        batch: {{max_wait: 10ms}}
        when: {{field: version, matches: '^2\\.'}}
        filters: [{{type: keep, fields: [n, version]}}]
      other: {{type: file, path: ./other.jsonl, batch: {{max_wait: 10ms}}}}
    """)


@pytest.fixture
def start(tmp_path):
    made: list[RouterProcess] = []

    async def make(*args: str) -> RouterProcess:
        (tmp_path / "router.yaml").write_text(CONFIG)
        proc = RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path),
                             args=("--log-format", "json", *args))
        made.append(proc)
        proc.start()
        await proc.wait_ready()
        return proc

    yield make
    for proc in made:
        proc.stop()


async def tap_while_posting(http: aiohttp.ClientSession, router: RouterProcess, query: str,
                            count: int) -> list[dict]:
    """Open the tap with ``limit=count`` and post beacons until it has ended by itself."""
    lines: list[dict] = []
    async with http.get(f"{router.url}/admin/tap?{query}&limit={count}",
                        headers=ADMIN) as tap:
        assert tap.status == 200, await tap.text()
        assert tap.headers["Content-Type"] == "application/x-ndjson"

        async def read() -> None:
            async for raw in tap.content:
                if raw.strip():
                    lines.append(json.loads(raw))

        reading = asyncio.create_task(read())
        n = 0
        while not reading.done() and n < 3000:  # the delivery side subscribes a bit later
            body = {"n": n, "version": "2.1" if n % 2 else "1.0", "other": "x"}
            async with http.post(f"{router.url}/beacon", json=body) as resp:
                assert resp.status == 202
            n += 1
            await asyncio.sleep(0.005)
        await asyncio.wait_for(reading, 10)
    return lines


def delivery_socket(pid: int) -> str:
    """The delivery process's state socket, from /proc: its listening unix socket's path."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(
            f"/proc/{pid}/fd/{fd}") else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/unix", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 8 and parts[6] in inodes and parts[7].endswith("delivery.sock"):
                return parts[7]
    raise AssertionError("no state socket")


async def delivery_state(pid: int) -> dict:
    connector = aiohttp.UnixConnector(path=delivery_socket(pid))
    async with aiohttp.ClientSession(connector=connector) as http, \
            http.get("http://delivery/state") as resp:
        return await resp.json()


async def delivery_pid(http: aiohttp.ClientSession, router: RouterProcess) -> int:
    pid = 0

    async def known() -> bool:
        nonlocal pid
        async with http.get(f"{router.url}/readyz") as resp:
            pid = ((await resp.json()).get("delivery") or {}).get("pid") or 0
        return bool(pid)

    await until(known, timeout=30)
    return pid


async def test_a_backend_tap_relays_what_the_backend_is_handed_after_its_when_and_filters(
        start):
    router = await start()
    async with aiohttp.ClientSession() as http:
        lines = await tap_while_posting(http, router, "backend=lines", 3)
        assert len(lines) == 3
        # Its `when:` let only 2.x through, its filter kept n and version.
        assert all(set(line["data"]) == {"n", "version"} and line["data"]["version"] == "2.1"
                   for line in lines), lines


async def test_when_narrows_a_backend_tap_across_two_workers_files(start):
    router = await start("--workers", "2")
    when = json.dumps({"field": "n", "in": list(range(1, 3000, 3))})
    async with aiohttp.ClientSession() as http:
        lines = await tap_while_posting(http, router, f"backend=other&when={when}", 6)
        assert len(lines) == 6 and all(line["data"]["n"] % 3 == 1 for line in lines)
        # One delivery process delivers both workers' spool files into the one hub.
        pid = await delivery_pid(http, router)
        assert (await delivery_state(pid))["files"] == 2


async def test_unknown_backend_and_bad_queries_answer_json_errors_from_the_delivery_side(
        start):
    router = await start()
    async with aiohttp.ClientSession() as http:
        for query, status in (("backend=nope", 404), ("backend=lines&limit=0", 400),
                              ("backend=lines&when={", 400)):
            async with http.get(f"{router.url}/admin/tap?{query}", headers=ADMIN) as resp:
                assert resp.status == status, query
                body = await resp.json()
                assert set(body) == {"error", "detail"}
        async with http.get(f"{router.url}/admin/tap?backend=nope", headers=ADMIN) as resp:
            assert "lines" in (await resp.json())["detail"]  # names the running ones


async def test_a_client_that_leaves_unsubscribes_in_the_delivery_process(start):
    router = await start()
    async with aiohttp.ClientSession() as http:
        pid = await delivery_pid(http, router)
        assert (await delivery_state(pid))["tap_subscribers"] == 0
        tap = await http.get(f"{router.url}/admin/tap?backend=lines", headers=ADMIN)
        assert tap.status == 200

        async def subscribed() -> bool:
            return (await delivery_state(pid))["tap_subscribers"] == 1

        await until(subscribed, timeout=10)
        tap.close()  # the reader leaves

        async def gone() -> bool:
            return (await delivery_state(pid))["tap_subscribers"] == 0

        # The relay and the delivery process each look every CHECK_READER (0.5 s), not only
        # at their next keepalive line (5 s each, as before).
        await until(gone, timeout=5)  # (the keepalive alone took up to 10 s)


async def test_an_unreachable_delivery_process_is_a_503_not_a_hang(start):
    router = await start()
    async with aiohttp.ClientSession() as http:
        pid = await delivery_pid(http, router)
        os.unlink(delivery_socket(pid))  # as while it restarts: no socket
        async with http.get(f"{router.url}/admin/tap?backend=lines", headers=ADMIN,
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"] == "unavailable"


async def test_sigterm_with_a_backend_tap_open_stops_and_ends_the_stream(start):
    router = await start()
    async with aiohttp.ClientSession() as http, http.get(
            f"{router.url}/admin/tap?backend=other", headers=ADMIN) as tap:
        assert tap.status == 200
        code = await asyncio.to_thread(router.terminate, 30)
        rest = await asyncio.wait_for(tap.content.read(), 10)
    assert code == 0 and rest.strip() == b"", router.logs()
