"""The serving process freezes its startup heap (router/serve/server.py, freeze_startup_heap):
checked on real ``beacon-router serve`` processes by what each one reports of its own
``gc.get_freeze_count()``, not by timing."""

from __future__ import annotations

import json
import os
import signal

import aiohttp
import pytest
from support import RouterProcess, beacon, free_port, until

CONFIG = """
spool: {path: ./spool.db}
server: {drain_delay: 0s}
pipeline:
  - {type: hash, fields: [installation_id], key: test-only-key-0123456789abcdef}
backends:
  archive: {type: file, path: ./archive.jsonl, batch: {max_wait: 20ms}}
"""
# Imports, config and app alone are tens of thousands of tracked objects.
SOME = 10_000


def records(router: RouterProcess, event: str) -> list[dict[str, object]]:
    with open(router.log, encoding="utf-8") as fh:
        return [r for r in map(_json, fh) if r.get("message") == event]


def _json(line: str) -> dict[str, object]:
    try:
        return dict(json.loads(line))
    except ValueError:
        return {}


@pytest.fixture
def started(tmp_path):
    made: list[RouterProcess] = []

    def make(*args: str) -> RouterProcess:
        (tmp_path / "router.yaml").write_text(CONFIG)
        router = RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path),
                               args=("--log-format", "json", "--log-level", "debug", *args))
        made.append(router)
        router.start()
        return router

    yield make
    for router in made:
        router.stop()


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_the_serving_process_has_frozen_its_startup_heap_and_still_ingests(
        started, delivery):
    router = started("--delivery", delivery)
    await router.wait_ready()
    [listening] = records(router, "listening")
    assert int(listening["gc_frozen"]) > SOME, router.logs()
    async with aiohttp.ClientSession() as http, http.post(f"{router.url}/beacon",
                                                          json=beacon()) as resp:
        assert resp.status == 202


async def test_a_reload_thaws_collects_and_freezes_again(started):
    router = started("--delivery", "inline")
    await router.wait_ready()
    assert router.proc is not None
    os.kill(router.proc.pid, signal.SIGHUP)
    await until(lambda: records(router, "heap refrozen after a reload"), timeout=20)
    [refrozen] = records(router, "heap refrozen after a reload")
    assert int(refrozen["gc_frozen"]) > SOME
