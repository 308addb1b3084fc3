"""`beacon-router replay` from a store archive into the PostHog stand-in, as a real process:
each archived uuid arrives once, an interrupted replay goes on where it stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from fake_posthog import API_KEY, FakePostHog
from support import REPO

from router.config.loader import load
from router.event import Event

N = 10_000  # bench/replay.py runs the same with 100,000 (bench/README.md, "replay")


class SlowPostHog(FakePostHog):
    """The stand-in taking a while per request, so a test can interrupt a replay midway."""

    delay = 0.0

    async def handle(self, request):
        await asyncio.sleep(self.delay)
        return await super().handle(request)


def write_config(tmp_path: Path, posthog_url: str, *, max_events: int = 500,
                 extra: str = "") -> str:
    path = tmp_path / "router.yaml"
    path.write_text(textwrap.dedent(f"""
        spool: {{path: ./data/spool.db}}
        backends:
          archive: {{type: store, url: "sqlite:///data/beacons.db"}}
          posthog:
            type: posthog
            host: "{posthog_url}"
            api_key: {API_KEY}
            distinct_id: installation_id
            batch: {{max_events: {max_events}, max_wait: 10ms}}
            retry: {{initial: 10ms, max: 50ms}}
        """) + extra)
    return str(path)


async def archive(config_path: str, n: int, cwd: Path) -> list[str]:
    """Write ``n`` events into the config's `archive` store as the store backend does."""
    old = os.getcwd()
    os.chdir(cwd)  # the store URL is relative to where the router runs
    try:
        store = load(config_path).backends["archive"].build()
        uuids = []
        for start in range(0, n, 5000):
            events = [Event.new({"installation_id": f"inst-{i % 700}", "version": f"{i % 3}.0.0",
                                 "n": i},
                                received_at=f"2026-11-{1 + i * 28 // n:02d}T12:00:00.000Z")
                      for i in range(start, min(n, start + 5000))]
            assert (await store.send(events)).ok
            uuids += [e.uuid for e in events]
        await store.aclose()
        return uuids
    finally:
        os.chdir(old)


def replay(config: str, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "router.cli", "replay", "--config", config,
         "--from", "archive", "--to", "posthog", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO})


async def finished(proc: subprocess.Popen[bytes], timeout: float = 120) -> tuple[int, dict, str]:
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    lines = out.decode().strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, err.decode()


async def until(predicate, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_replaying_the_archive_twice_sends_each_uuid_once_under_its_own_uuid(
        tmp_path, serve):
    fake = FakePostHog()
    fake.url = await serve(fake)
    config = write_config(tmp_path, fake.url)
    uuids = await archive(config, N, tmp_path)

    code, summary, _ = await finished(replay(config, tmp_path))
    assert code == 0
    assert summary["delivered"] == N and summary["done"] and summary["dead_lettered"] == 0
    assert fake.received_total == N and set(fake.accepted) == set(uuids)

    # The same command again: the job is finished, nothing is sent.
    code, summary, err = await finished(replay(config, tmp_path))
    assert code == 0 and "already finished" in err and fake.received_total == N

    # --restart sends it all again: PostHog deduplicates by uuid, so each is still counted once.
    code, summary, _ = await finished(replay(config, tmp_path, "--restart"))
    assert code == 0 and summary["delivered"] == N
    assert fake.received_total == 2 * N and set(fake.accepted) == set(uuids)
    first = fake.accepted[uuids[0]]
    assert first["distinct_id"] == "inst-0" and first["properties"]["n"] == 0


async def test_an_interrupted_replay_run_again_delivers_each_uuid_exactly_once(tmp_path, serve):
    fake = SlowPostHog()
    fake.delay = 0.02
    fake.url = await serve(fake)
    config = write_config(tmp_path, fake.url, max_events=100)
    uuids = await archive(config, N, tmp_path)

    proc = replay(config, tmp_path)
    await until(lambda: fake.received_total >= N // 4)
    proc.send_signal(signal.SIGINT)  # Ctrl-C (SIGTERM takes the same path)
    code, summary, err = await finished(proc)
    assert code == 130 and not summary["done"], err
    assert "run the same command again" in err
    stopped_at = fake.received_total
    assert N // 4 <= stopped_at < N and summary["delivered"] == stopped_at

    fake.delay = 0
    code, summary, _ = await finished(replay(config, tmp_path))
    assert code == 0 and summary["done"] and summary["scanned"] == N
    assert fake.received_total == N  # not one event sent twice
    assert set(fake.accepted) == set(uuids)


async def test_a_replay_killed_9_resends_at_most_its_last_batch_and_vendors_dedupe_it(
        tmp_path, serve):
    fake = SlowPostHog()
    fake.delay = 0.02
    fake.url = await serve(fake)
    config = write_config(tmp_path, fake.url, max_events=100)
    uuids = await archive(config, N, tmp_path)

    proc = replay(config, tmp_path)
    await until(lambda: fake.received_total >= N // 3)
    proc.kill()
    await finished(proc)
    fake.delay = 0
    code, summary, _ = await finished(replay(config, tmp_path))

    assert code == 0 and summary["done"]
    assert set(fake.accepted) == set(uuids) and len(fake.accepted) == N
    assert fake.received_total - N <= 100  # only the batch whose checkpoint the kill prevented
