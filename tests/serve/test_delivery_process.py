"""``serve --delivery process``: real ``beacon-router serve`` processes (a supervisor, its
ingest workers and one delivery process) with a real SQLite spool and a real webhook
receiver on loopback. Kill -9 either child and count: no acknowledged event is lost, and
duplicates stay within the batches in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import web
from support import REPO, RouterProcess, WebhookReceiver, free_port, send_beacon, until

CONFIG = """
spool: {{path: ./spool.db}}
server: {{drain_delay: 0s}}
admin: {{token: admin-token-for-tests, listen: same}}
# support.beacon()'s uuid is its event id: the tests follow each acknowledged beacon by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
pipeline:
  - {{type: hash, fields: [installation_id], key: test-only-key-0123456789abcdef}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/{path}
    timeout: 5s
    batch: {{max_events: 50, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
BATCH = 50


class SlowReceiver(WebhookReceiver):
    """A webhook that takes a while to answer, so a batch is in flight when a kill comes."""

    delay = 0.1

    async def handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return await super().handle(request)


@pytest.fixture
async def receiver():
    r = SlowReceiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def separate(tmp_path):
    """Factory: a router with ``--delivery process`` (and more ``args``) on ``config``."""
    made: list[RouterProcess] = []

    def make(config: str, *args: str) -> RouterProcess:
        path = tmp_path / "router.yaml"
        path.write_text(config)
        proc = RouterProcess(str(path), free_port(), str(tmp_path),
                             args=("--log-format", "json", "--delivery", "process", *args))
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


def ingest_pids(router: RouterProcess) -> dict[int, int]:
    """Worker index → pid of its latest ingest process, from the supervisor's log."""
    pids: dict[int, int] = {}
    with open(router.log, encoding="utf-8") as fh:
        for line in fh:
            if '"worker started"' in line:
                record = json.loads(line)
                pids[int(record["worker"])] = int(record["pid"])
    return pids


async def readyz(http: aiohttp.ClientSession, router: RouterProcess) -> dict:
    async with http.get(f"{router.url}/readyz") as resp:
        return await resp.json()


async def delivery_pid(http: aiohttp.ClientSession, router: RouterProcess) -> int:
    """The delivery process's pid as /readyz shows it, once it answers."""
    pid = 0

    async def known() -> bool:
        nonlocal pid
        pid = (await readyz(http, router)).get("delivery", {}).get("pid") or 0
        return bool(pid)

    await until(known, timeout=30)
    return pid


async def load(http: aiohttp.ClientSession, router: RouterProcess, acked: list[str],
               requests: int) -> None:
    for _ in range(requests):  # bounded: stops by itself whatever happens to the router
        await send_beacon(http, router.url, acked)


def duplicates(receiver: WebhookReceiver) -> int:
    return sum(n - 1 for n in receiver.received().values())


async def test_kill_9_of_the_delivery_process_mid_batch_loses_no_acknowledged_event(
        separate, receiver):
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        first = await delivery_pid(http, router)
        senders = [asyncio.create_task(load(http, router, acked, 150)) for _ in range(8)]
        await until(lambda: len(receiver.received()) >= 100, timeout=60)
        os.kill(first, signal.SIGKILL)  # a batch is in flight: the receiver takes 0.1 s
        await asyncio.gather(*senders)
        # Ingest never stopped answering: every request was acknowledged.
        assert len(acked) == 8 * 150
        await receiver.wait_for(set(acked))
        assert await delivery_pid(http, router) != first, "the supervisor restarted it"
    # At most the batches in flight (and one not yet cursored) are sent twice.
    assert duplicates(receiver) <= 2 * BATCH, duplicates(receiver)
    assert router.terminate() == 0, router.logs()


async def test_readyz_lists_the_backends_while_the_delivery_process_is_away(separate, receiver):
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    async with aiohttp.ClientSession() as http:
        pid = await delivery_pid(http, router)
        os.kill(pid, signal.SIGSTOP)  # it cannot answer the state socket
        try:
            ready = await readyz(http, router)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Ingest stays ready, and the backend is there, its state unknown rather than absent
        # (a reader must not take an empty list for "nothing queued").
        assert ready["status"] == "ready"
        assert ready["delivery"]["process"] == "unreachable"
        assert ready["backends"] == {"hook": {"healthy": None, "consecutive_failures": None,
                                              "last_error": None, "queued": None}}
        assert (await readyz(http, router))["backends"]["hook"]["queued"] == 0
    assert router.terminate() == 0, router.logs()


async def test_kill_9_of_the_ingest_process_under_load_loses_no_acknowledged_event(
        separate, receiver):
    receiver.delay = 0.0
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        senders = [asyncio.create_task(load(http, router, acked, 300)) for _ in range(16)]
        await until(lambda: len(acked) >= 300, timeout=60)
        (victim,) = ingest_pids(router).values()
        os.kill(victim, signal.SIGKILL)
        await asyncio.gather(*senders)
        await router.wait_ready()
        assert ingest_pids(router)[0] != victim, "the supervisor restarted it"
        await receiver.wait_for(set(acked))
        # Delivery was not interrupted: no batch was in flight twice.
        assert duplicates(receiver) == 0
        await send_beacon(http, router.url, acked)  # the new worker took its file over
        await receiver.wait_for(set(acked))
    assert router.terminate() == 0, router.logs()


async def test_readyz_metrics_and_the_admin_api_show_the_delivery_process(separate, receiver):
    receiver.delay = 0.0
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            await send_beacon(http, router.url, acked)
        await receiver.wait_for(set(acked))
        pid = await delivery_pid(http, router)
        assert pid not in (router.proc.pid, *ingest_pids(router).values())
        ready = await readyz(http, router)
        assert ready["status"] == "ready"
        assert ready["delivery"]["process"] == "running"
        assert ready["backends"]["hook"]["healthy"] is True
        async with http.get(f"{router.url}/admin/backends", headers=ADMIN) as resp:
            hook = (await resp.json())["backends"]["hook"]
        assert hook["running"] is True and hook["health"]["healthy"] is True
        assert hook["health"]["last_success"] is not None

        async def delivered_in_metrics() -> bool:  # written by the delivery process
            async with http.get(f"{router.url}/metrics") as resp:
                text = await resp.text()
            return 'beacon_router_events_delivered_total{backend="hook"} 5.0' in text

        await until(delivered_in_metrics, timeout=10)
        # A backend's tap is relayed from the delivery process (tests/serve/test_delivery_tap.py).
        async with http.get(f"{router.url}/admin/tap?backend=nope", headers=ADMIN) as resp:
            assert resp.status == 404 and "hook" in (await resp.json())["detail"]

        # The backend goes away: the delivery process's health reaches /readyz.
        await receiver.stop()
        for _ in range(3):
            await send_beacon(http, router.url, acked)

        async def unhealthy() -> bool:
            return (await readyz(http, router))["backends"]["hook"]["healthy"] is False

        await until(unhealthy, timeout=30)
        ready = await readyz(http, router)
        assert ready["status"] == "ready", "ingest stays ready: the events are spooled"
        assert ready["backends"]["hook"]["last_error"]
        assert ready["backends"]["hook"]["queued"] >= 1
        await receiver.start()
        await receiver.wait_for(set(acked))
    assert router.terminate() == 0, router.logs()


async def test_sighup_reaches_the_delivery_process_which_rebuilds_the_backend(
        separate, receiver, tmp_path):
    receiver.delay = 0.0
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        await send_beacon(http, router.url, acked)
        await receiver.wait_for(set(acked))
        (tmp_path / "router.yaml").write_text(CONFIG.format(port=receiver.port, path="moved"))
        os.kill(router.proc.pid, signal.SIGHUP)  # the supervisor forwards it to every child

        async def reloaded() -> bool:
            with open(router.log, encoding="utf-8") as fh:
                lines = [json.loads(line) for line in fh if '"config reloaded"' in line]
            return any(rec.get("role") == "delivery" and rec.get("changed") == ["hook"]
                       for rec in lines)

        await until(reloaded, timeout=30)
        later: list[str] = []
        await send_beacon(http, router.url, later)
        await receiver.wait_for(set(later), paths=("/moved",))
        assert not set(later) & set(receiver.received("/hook"))
    assert router.terminate() == 0, router.logs()


async def test_an_admin_reload_signals_every_process(separate, receiver, tmp_path):
    receiver.delay = 0.0
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    async with aiohttp.ClientSession() as http:
        (tmp_path / "router.yaml").write_text(CONFIG.format(port=receiver.port, path="moved"))
        async with http.post(f"{router.url}/admin/reload", headers=ADMIN) as resp:
            assert resp.status == 202, await resp.text()
        later: list[str] = []

        async def moved() -> bool:
            await send_beacon(http, router.url, later)
            await asyncio.sleep(0.2)
            return bool(receiver.received("/moved"))

        await until(moved, timeout=30)
    assert router.terminate() == 0, router.logs()


async def test_two_ingest_workers_share_one_delivery_process(separate, receiver, tmp_path):
    receiver.delay = 0.02
    router = separate(CONFIG.format(port=receiver.port, path="hook"), "--workers", "2")
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        await until(lambda: len(ingest_pids(router)) == 2, timeout=30)
        first = await delivery_pid(http, router)
        # New connections each: the kernel spreads them over both workers.
        senders = [asyncio.create_task(load(http, router, acked, 60)) for _ in range(8)]
        await until(lambda: len(receiver.received()) >= 50, timeout=60)
        os.kill(first, signal.SIGKILL)
        await asyncio.gather(*senders)
        assert len(acked) == 8 * 60
        await receiver.wait_for(set(acked))
        assert await delivery_pid(http, router) != first
    assert (tmp_path / "spool.db").exists() and (tmp_path / "spool-1.db").exists()
    assert duplicates(receiver) <= 2 * 2 * BATCH  # two files, each with a batch in flight
    assert router.terminate() == 0, router.logs()


async def test_sigterm_stops_ingest_and_delivery_and_exits_0(separate, receiver):
    receiver.delay = 0.0
    router = separate(CONFIG.format(port=receiver.port, path="hook"))
    router.start()
    await router.wait_ready()
    started = time.monotonic()
    assert router.terminate() == 0, router.logs()
    assert time.monotonic() - started < 60
    assert '"delivery process stopped"' in router.logs()


async def test_status_and_dlq_commands_read_the_files_and_the_delivery_process_health(
        separate, receiver, tmp_path):
    receiver.delay = 0.0
    port = free_port()
    config = CONFIG.format(port=receiver.port, path="hook").replace(
        "server: {drain_delay: 0s}", f'server: {{drain_delay: 0s, listen: "127.0.0.1:{port}"}}')
    router = separate(config)
    router.port = port
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        await send_beacon(http, router.url, acked)
        await receiver.wait_for(set(acked))

    def command(*args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "router.cli", *args, "--config", "router.yaml", "-o", "json"],
            cwd=tmp_path, capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": REPO})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    status: dict = {}

    async def drained() -> bool:  # the cursor reaches the file just after the ack
        nonlocal status
        status = await asyncio.to_thread(command, "status")
        return status["backends"]["hook"]["queued"] == 0

    await until(drained, timeout=30, interval=0.2)
    assert status["backends"]["hook"]["health"]["healthy"] is True
    assert await asyncio.to_thread(command, "dlq", "list", "--backend", "hook") == []
    assert router.terminate() == 0, router.logs()


async def test_the_delivery_process_adopts_the_files_of_former_workers(
        separate, receiver, tmp_path):
    receiver.delay = 0.0
    await receiver.stop()  # nothing is delivered while two workers spool
    config = CONFIG.format(port=receiver.port, path="hook")
    router = separate(config, "--workers", "2")
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(load(http, router, acked, 10) for _ in range(8)))
    assert router.terminate() == 0, router.logs()
    assert (tmp_path / "spool-1.db").exists()

    await receiver.start()
    fewer = separate(config)  # one ingest worker now: spool-1.db belongs to nobody
    fewer.start()
    await fewer.wait_ready()
    await receiver.wait_for(set(acked))
    await until(lambda: not (tmp_path / "spool-1.db").exists(), timeout=30)
    assert fewer.terminate() == 0, fewer.logs()


def test_a_backend_over_several_files_is_healthy_only_if_every_file_says_so():
    from router.delivery_link import merge_backends

    def state(healthy, failures, error, success, queued, age):
        return {"healthy": healthy, "consecutive_failures": failures, "last_error": error,
                "last_success": success, "queued": queued, "oldest_event_age_seconds": age}

    merged = merge_backends([{"hook": state(True, 0, None, 10.0, 3, 1.0)},
                             {"hook": state(False, 4, "timeout", 5.0, 2, 7.5)}])
    assert merged == {"hook": state(False, 4, "timeout", 10.0, 5, 7.5)}


async def test_on_a_redis_spool_the_delivery_process_is_one_more_consumer(
        separate, receiver, prefix):
    config = CONFIG.format(port=receiver.port, path="hook").replace(
        "spool: {path: ./spool.db}",
        f'spool: {{type: redis, url: "redis://127.0.0.1:6379/0", key_prefix: "{prefix}", '
        "claim_idle: 1s}")
    router = separate(config)
    router.start()
    await router.wait_ready()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        first = await delivery_pid(http, router)
        senders = [asyncio.create_task(load(http, router, acked, 60)) for _ in range(8)]
        await until(lambda: len(receiver.received()) >= 50, timeout=60)
        os.kill(first, signal.SIGKILL)  # its pending entries are claimed by the next one
        await asyncio.gather(*senders)
        assert len(acked) == 8 * 60
        await receiver.wait_for(set(acked))
        assert await delivery_pid(http, router) != first
        ready = await readyz(http, router)
        assert ready["backends"]["hook"]["healthy"] is True
    assert duplicates(receiver) <= 2 * BATCH
    assert router.terminate() == 0, router.logs()
