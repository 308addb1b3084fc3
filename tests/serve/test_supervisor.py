"""``serve --workers N``: real processes sharing a port, one spool file each, none orphaned.

The router runs as a real ``beacon-router serve --workers N`` subprocess tree; events go to a
real webhook receiver on loopback, which counts every uuid it is sent.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest
from aiohttp import web
from support import (
    REPO,
    RouterProcess,
    WebhookReceiver,
    free_port,
    require_service,
    until,
)

from router.metrics import Metrics
from router.serve.supervisor import RestartPolicy, fork_sharing
from router.speedups import in_use

CONFIG = """
server: {{shutdown_timeout: 2s}}
spool: {{path: ./data/spool.db}}
# the tests follow each acknowledged beacon by its uuid: an event id
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout: 2s
    batch: {{max_events: 50, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 200ms, give_up_after: 1h}}
"""


class Workers(RouterProcess):
    """``beacon-router serve --workers N``; knows its workers' pids from the log."""

    def __init__(self, config: str, port: int, workdir: str, workers: int | None) -> None:
        flag = ("--workers", str(workers)) if workers else ()
        super().__init__(config, port, workdir, args=("--log-format", "json", *flag))
        self.workers = workers
        self._log_from = 0

    def start(self) -> None:
        self._log_from = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        super().start()

    def events(self, name: str) -> list[dict]:
        with open(self.log, encoding="utf-8", errors="replace") as fh:
            fh.seek(self._log_from)
            lines = [json.loads(line) for line in fh if line.startswith("{")]
        return [line for line in lines if line.get("message") == name]

    def pids(self) -> dict[int, int]:
        """Worker index → pid of its latest incarnation."""
        return {e["worker"]: e["pid"] for e in self.events("worker started")}

    async def wait_listening(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` workers (incarnations) have logged that they listen, then ready."""
        deadline = time.monotonic() + timeout
        while len(self.events("listening")) < count:
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"workers not listening:\n{self.logs()}")
            await asyncio.sleep(0.05)
        await self.wait_ready(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # lets the workers go too
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def workers(tmp_path):
    """Factory: ``workers(config_text, n)`` (n None: no ``--workers`` flag); the router
    processes stop after the test."""
    made: list[Workers] = []
    port = free_port()

    def make(config_text: str, n: int | None) -> Workers:
        path = tmp_path / "router.yaml"
        path.write_text(config_text)
        proc = Workers(str(path), port, str(tmp_path), n)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture
async def receiver():
    r = WebhookReceiver()
    yield r
    await r.stop()


async def post_beacons(url: str, count: int, *, concurrency: int = 16) -> list[str]:
    """POST ``count`` beacons, each on a new connection (so the kernel spreads them over the
    workers); the uuids the router acknowledged with 202."""
    acked: list[str] = []
    todo = iter(range(count))

    async def sender(http: aiohttp.ClientSession) -> None:
        for _ in todo:
            event_id = str(uuid.uuid4())
            try:
                async with http.post(
                    f"{url}/beacon",
                    json={
                        "uuid": event_id,
                        "installation_id": str(uuid.uuid4()),
                        "version": "1.4.2",
                    },
                ) as resp:
                    if resp.status == 202:
                        acked.append(event_id)
            except (TimeoutError, aiohttp.ClientError):
                pass  # not acknowledged: the router owes nothing for it

    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(sender(http) for _ in range(concurrency)))
    return acked


def events_written(path: str) -> int:
    """How many events were ever appended to a spool file (its id counter survives deletes)."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


async def wait_gone(path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not os.path.exists(path), f"{path} is still there"


async def test_two_workers_share_the_port_and_deliver_every_event_exactly_once(
    workers, receiver, tmp_path
):
    await receiver.start()
    router = workers(CONFIG.format(port=receiver.port), 2)
    router.start()
    await router.wait_listening(2)

    acked = await post_beacons(router.url, 200)
    assert len(acked) == 200
    await receiver.wait_for(set(acked))
    await asyncio.sleep(0.3)  # a duplicate, if any, would arrive in this time
    assert router.terminate() == 0, router.logs()

    assert set(receiver.received()) == set(acked)
    assert max(receiver.received().values()) == 1, "an event was delivered twice"
    first, second = (
        events_written(tmp_path / "data/spool.db"),
        events_written(tmp_path / "data/spool-1.db"),
    )
    assert first > 0 and second > 0, "one worker received no traffic"
    assert first + second == 200


async def test_a_worker_killed_with_sigkill_is_restarted_and_no_acked_event_is_lost(
    workers, receiver
):
    await receiver.start()
    router = workers(CONFIG.format(port=receiver.port), 2)
    router.start()
    await router.wait_listening(2)
    victim = router.pids()[1]

    load = asyncio.create_task(post_beacons(router.url, 400))
    while sum(receiver.received().values()) < 60 and not load.done():
        await asyncio.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    acked = await load
    await router.wait_listening(3)  # the restarted worker listens again
    assert router.pids()[1] != victim
    acked += await post_beacons(router.url, 60)  # both incarnations' files are served

    await receiver.wait_for(set(acked))
    assert len(acked) >= 120
    assert router.events("worker died; restarting it")[0]["how"] == "signal SIGKILL"
    assert router.terminate() == 0, router.logs()


async def test_events_of_a_second_worker_are_delivered_after_restarting_with_one(
    workers, receiver, tmp_path
):
    two = CONFIG.format(port=receiver.port).replace("server: {", "server: {workers: 2, ")
    router = workers(two, None)  # server.workers; the receiver is down for now
    router.start()
    await router.wait_listening(2)
    acked = await post_beacons(router.url, 150)
    assert router.terminate() == 0, router.logs()
    shard = tmp_path / "data/spool-1.db"
    assert events_written(shard) > 0

    await receiver.start()
    single = workers(two, 1)  # --workers overrides server.workers
    single.start()
    await single.wait_ready()
    await receiver.wait_for(set(acked))
    await wait_gone(shard)
    await wait_gone(f"{shard}.lock")
    assert (tmp_path / "data/spool.db").exists()
    assert max(receiver.received().values()) == 1


async def test_sighup_reaches_every_worker_and_none_dies_of_it(workers, receiver, tmp_path):
    await receiver.start()
    router = workers(CONFIG.format(port=receiver.port), 2)
    router.start()
    await router.wait_listening(2)
    config = tmp_path / "router.yaml"
    config.write_text(config.read_text().replace("max_events: 50", "max_events: 40"))

    assert router.proc is not None
    router.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while {e.get("worker") for e in router.events("config reloaded")
           if e.get("role") != "delivery"} != {0, 1}:
        assert time.monotonic() < deadline, router.logs()
        await asyncio.sleep(0.05)
    assert router.events("config reloaded for restarted workers")
    assert not router.events("worker died; restarting it"), router.logs()
    acked = await post_beacons(router.url, 50)
    await receiver.wait_for(set(acked))
    assert router.terminate() == 0, router.logs()


def test_a_worker_is_restarted_at_once_after_a_healthy_run():
    policy = RestartPolicy()
    assert policy.after_death(ran=3600) == 0.0
    assert policy.after_death(ran=3600) == 0.0


def test_a_worker_dying_at_start_is_restarted_ever_later_then_given_up():
    policy = RestartPolicy()
    delays = [policy.after_death(ran=0.2) for _ in range(RestartPolicy.max_quick_deaths)]
    assert delays[:-1] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] is None


def test_a_healthy_run_forgives_earlier_deaths_at_start():
    policy = RestartPolicy()
    for _ in range(RestartPolicy.max_quick_deaths - 1):
        policy.after_death(ran=0.2)
    assert policy.after_death(ran=60) == 0.0
    assert policy.after_death(ran=0.2) == 0.5


def test_a_forked_child_finds_the_supervisors_objects_frozen():
    # What keeps the imported router shared between the supervisor and its children: the
    # child's collector never visits (so never writes to) what existed at the fork.
    loaded = [{"config": n} for n in range(1000)]  # stands for the loaded config
    read, write = os.pipe()
    pid = fork_sharing()
    if pid == 0:  # the child: report, and leave without running the parent's cleanup
        os.write(write, str(gc.get_freeze_count()).encode())
        os._exit(0)
    os.close(write)
    try:
        frozen = int(os.read(read, 64))
    finally:
        os.close(read)
        os.waitpid(pid, 0)
        gc.unfreeze()  # this test process goes on as before
    assert frozen >= len(loaded)


async def test_serve_with_workers_fails_fast_when_another_program_holds_the_port(tmp_path):
    (tmp_path / "router.yaml").write_text("spool: {path: ./data/spool.db}\n")
    with socket.socket() as holder:  # no SO_REUSEPORT: the workers cannot join it
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "router.cli",
                "serve",
                "--config",
                "router.yaml",
                "--listen",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": REPO},
        )
    assert done.returncode == 1
    assert "cannot serve" in done.stderr
    assert not (tmp_path / "data").exists(), "no worker should have started"


@pytest.mark.redis
async def test_two_workers_share_one_redis_stream_and_deliver_every_event_once(workers, receiver):
    require_service("Redis", "127.0.0.1", 6379)
    await receiver.start()
    prefix = f"test-workers-{uuid.uuid4().hex[:8]}"
    config = CONFIG.format(port=receiver.port).replace(
        "spool: {path: ./data/spool.db}",
        f"spool: {{type: redis, url: 'redis://127.0.0.1:6379/0', key_prefix: {prefix}}}",
    )
    router = workers(config, 2)
    router.start()
    await router.wait_listening(2)
    try:
        acked = await post_beacons(router.url, 200)
        assert len(acked) == 200
        await receiver.wait_for(set(acked))
        await asyncio.sleep(0.3)
        assert max(receiver.received().values()) == 1, "an event was delivered twice"
        assert router.terminate() == 0, router.logs()
    finally:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


async def test_admin_api_under_workers_sees_and_replays_every_workers_dead_letters(
        workers, aiohttp_server):
    refusing = True
    got: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if refusing:
            return web.json_response({"error": "no"}, status=400)
        got.extend(e["uuid"] for e in body["events"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    admin_port = free_port()
    text = CONFIG.format(port=server.port) + (
        f'admin: {{token: "admin-token-0123456789abcdef", listen: "127.0.0.1:{admin_port}"}}\n')
    router = workers(text, 2)
    router.start()
    await router.wait_listening(2)
    acked = await post_beacons(router.url, 40)
    data = os.path.join(router.workdir, "data")
    assert events_written(os.path.join(data, "spool.db")) > 0
    assert events_written(os.path.join(data, "spool-1.db")) > 0, "both workers took traffic"

    auth = {"Authorization": "Bearer admin-token-0123456789abcdef"}
    base = f"http://127.0.0.1:{admin_port}/admin/backends/hook/dlq"
    async with aiohttp.ClientSession(headers=auth) as http:
        listed: list[dict] = []
        deadline = time.monotonic() + 30
        while len(listed) < len(acked) and time.monotonic() < deadline:
            async with http.get(base, params={"limit": "1000"}) as resp:
                assert resp.status == 200
                listed = (await resp.json())["dead_letters"]
            await asyncio.sleep(0.2)
        assert {d["event"]["uuid"] for d in listed} == set(acked)
        refusing = False
        async with http.post(f"{base}/replay") as resp:
            assert resp.status == 200 and (await resp.json())["replayed"] == len(acked)
    deadline = time.monotonic() + 30
    while set(got) < set(acked) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert set(got) == set(acked)


def metric(text: str, name: str) -> float:
    """The value of the one sample ``name`` (with its labels) in an exposition."""
    [value] = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ")]
    return value


async def scrapes(url: str, count: int) -> list[tuple[str, str]]:
    """(Content-Type, body) of ``count`` scrapes, each on a new connection (any worker)."""
    out = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(count):
            async with http.get(f"{url}/metrics") as resp:
                assert resp.status == 200
                out.append((resp.headers["Content-Type"], await resp.text()))
    return out


async def all_scrapes_count(url: str, series: str, expected: float) -> bool:
    return all(metric(text, series) == expected for _, text in await scrapes(url, 4))


async def test_one_scrape_shows_every_workers_metrics_whichever_worker_answers(
    workers, receiver, tmp_path
):
    await receiver.start()
    router = workers(CONFIG.format(port=receiver.port), 2)
    router.start()
    await router.wait_listening(2)
    acked = await post_beacons(router.url, 120)
    assert len(acked) == 120
    await receiver.wait_for(set(acked))
    # Both workers took a share: either one alone would count fewer than 120.
    assert 0 < events_written(tmp_path / "data/spool.db") < 120

    accepted = 'beacon_router_events_accepted_total{source="beacon"}'
    native = in_use()  # the router runs with this process's environment and build
    delivered = 'beacon_router_events_delivered_total{backend="hook"}'
    # A worker's counts reach the files every second (router/tally.py) and before it answers.
    await until(lambda: all_scrapes_count(router.url, accepted, 120), timeout=10)
    for content_type, text in await scrapes(router.url, 8):
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert metric(text, accepted) == 120
        assert metric(text, delivered) == 120
        assert metric(text, f'beacon_router_build_info{{native="{native}",version="0.1.0"}}') == 1
        assert "python_info{" in text  # the platform collector

    # A worker killed and restarted: what it counted still counts.
    old = router.pids()[0]
    os.kill(old, signal.SIGKILL)
    await router.wait_listening(3)
    for _, text in await scrapes(router.url, 4):
        assert metric(text, accepted) == 120
    assert router.terminate() == 0, router.logs()


def test_one_process_shows_its_process_and_platform_metrics():
    text, content_type = Metrics().render()
    assert b"process_cpu_seconds_total" in text and b"python_info{" in text
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    _, openmetrics = Metrics().render("application/openmetrics-text; version=1.0.0")
    assert openmetrics.startswith("application/openmetrics-text; version=1.0.0")


async def test_the_spool_gauges_of_one_scrape_add_up_every_workers_spool_file(workers, tmp_path):
    # The backend is down: every acknowledged event waits in one of the two spool files.
    router = workers(CONFIG.format(port=free_port()), 2)
    router.start()
    await router.wait_listening(2)
    acked = await post_beacons(router.url, 60)
    assert len(acked) == 60
    assert 0 < events_written(tmp_path / "data/spool.db") < 60  # both files hold a share

    depth = 'beacon_router_spool_depth_events{backend="hook"}'
    deadline = time.monotonic() + 30  # each worker measures its own file every 5 s
    while True:
        values = {metric(text, depth) for _, text in await scrapes(router.url, 4)}
        if values == {60.0}:
            break
        assert time.monotonic() < deadline, f"spool depth seen: {values}"
        await asyncio.sleep(0.5)
    assert router.terminate() == 0, router.logs()
