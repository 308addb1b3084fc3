"""A backend's `concurrency` holds for the whole router under ``serve --workers N``: the
delivery process delivers every worker's spool file, and all of them share one limit per
backend (router/delivery.py's SendLimits). Real router subprocesses, a real webhook."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp
import pytest
from aiohttp import web
from support import RouterProcess, WebhookReceiver, free_port, send_beacon, until

CONFIG = """
spool: {{path: ./spool.db}}
server: {{drain_delay: 0s}}
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout: 5s
    concurrency: {concurrency}
    batch: {{max_events: 10, max_wait: 20ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""


class CountingReceiver(WebhookReceiver):
    """Holds each request a while and records the most requests it had open at once."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0
        self.peak = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await asyncio.sleep(0.05)
            return await super().handle(request)
        finally:
            self.open -= 1


@pytest.fixture
async def receiver():
    r = CountingReceiver()
    await r.start()
    yield r
    await r.stop()


def start(receiver: CountingReceiver, tmp_path, concurrency: int, *args: str) -> RouterProcess:
    path = tmp_path / "router.yaml"
    path.write_text(CONFIG.format(port=receiver.port, concurrency=concurrency))
    router = RouterProcess(str(path), free_port(), str(tmp_path),
                           args=("--log-format", "json", "--workers", "2", *args))
    router.start()
    return router


async def load(router: RouterProcess, receiver: CountingReceiver) -> None:
    """400 beacons over 8 connections; every acknowledged one must reach the webhook."""
    acked: list[str] = []

    async def sender() -> None:
        # A session each: new connections, which the kernel spreads over both workers.
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                await send_beacon(http, router.url, acked)

    await asyncio.gather(*(sender() for _ in range(8)))
    assert len(acked) == 8 * 50
    await receiver.wait_for(set(acked))  # every acknowledged event, limit or not


async def deliver_under_load(receiver: CountingReceiver, tmp_path, concurrency: int,
                             *args: str) -> None:
    router = start(receiver, tmp_path, concurrency, *args)
    try:
        await router.wait_ready()
        await load(router, receiver)
        assert router.terminate() == 0, router.logs()
    finally:
        router.stop()
    assert (tmp_path / "spool-1.db").exists()  # two files were delivered from


async def test_concurrency_1_means_one_request_at_a_time_across_two_workers_files(
        receiver, tmp_path):
    await deliver_under_load(receiver, tmp_path, 1, "--delivery", "process")
    assert receiver.peak == 1


async def test_concurrency_2_is_reached_under_load_and_never_exceeded(receiver, tmp_path):
    await deliver_under_load(receiver, tmp_path, 2, "--delivery", "process")
    assert receiver.peak == 2  # a backlog in two files: the limit, never above it


async def test_a_reload_to_concurrency_1_applies_to_every_file(receiver, tmp_path):
    router = start(receiver, tmp_path, 2, "--delivery", "process")
    try:
        await router.wait_ready()
        await load(router, receiver)
        assert receiver.peak == 2
        (tmp_path / "router.yaml").write_text(CONFIG.format(port=receiver.port, concurrency=1))
        os.kill(router.proc.pid, signal.SIGHUP)  # the supervisor forwards it to every child

        def reloaded_files() -> int:
            with open(router.log, encoding="utf-8") as fh:
                records = [json.loads(line) for line in fh if '"config reloaded"' in line]
            return sum(1 for r in records
                       if r.get("role") == "delivery" and r.get("changed") == ["hook"])

        await until(lambda: reloaded_files() >= 2, timeout=30)  # both files' workers
        receiver.peak = receiver.open
        await load(router, receiver)
        assert receiver.peak == 1
        assert router.terminate() == 0, router.logs()
    finally:
        router.stop()


async def test_a_reload_never_lets_the_old_and_the_new_limit_send_at_once(receiver, tmp_path):
    # Each spool file's old workers stop before any file's new ones start (delivery_process.
    # reload_together): file after file, the new limit (1) of one file and the old (2) of the
    # other could hold three requests open at once.
    router = start(receiver, tmp_path, 2, "--delivery", "process")
    try:
        await router.wait_ready()
        stop = asyncio.Event()
        acked: list[str] = []

        async def sender() -> None:
            async with aiohttp.ClientSession() as http:
                while not stop.is_set():
                    await send_beacon(http, router.url, acked)

        senders = [asyncio.create_task(sender()) for _ in range(8)]
        await until(lambda: receiver.peak == 2, timeout=30)
        (tmp_path / "router.yaml").write_text(CONFIG.format(port=receiver.port, concurrency=1))
        os.kill(router.proc.pid, signal.SIGHUP)

        def reloaded_files() -> int:
            with open(router.log, encoding="utf-8") as fh:
                return sum(1 for line in fh if '"config reloaded"' in line
                           and '"role": "delivery"' in line)

        await until(lambda: reloaded_files() >= 2, timeout=30)
        await asyncio.sleep(0.5)  # the new workers send under the new limit for a while
        stop.set()
        await asyncio.gather(*senders)
        await receiver.wait_for(set(acked))
        assert receiver.peak == 2  # never 3, through the reload
        assert router.terminate() == 0, router.logs()
    finally:
        router.stop()
