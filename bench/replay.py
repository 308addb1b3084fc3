"""Replay at scale: 100,000 archived events into the PostHog stand-in, twice; each uuid once.

The archive is a SQLite store filled as the store backend writes it; ``beacon-router replay``
runs as its own process, into tests/vendors/fake_posthog.py (PostHog's /batch/ contract, events
kept by uuid) served on loopback by this process. The first run sends every event; the second,
with ``--restart``, sends them all again, and the stand-in, like PostHog, counts each uuid once.
The suite runs the same with 10,000 (tests/vendors/test_replay_posthog.py).

    .venv/bin/python bench/replay.py [--events 100000]

Writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from aiohttp import web

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests" / "vendors"))

from fake_posthog import API_KEY, FakePostHog  # noqa: E402

from router.config.loader import load  # noqa: E402
from router.event import Event  # noqa: E402


async def fill(config: str, n: int) -> list[str]:
    store = load(config).backends["archive"].build()
    uuids: list[str] = []
    for start in range(0, n, 5000):
        batch = [Event.new({"installation_id": f"inst-{i % 5000}", "version": "2.4.1",
                            "platform": {"os": "linux"}, "counts": {"users": i % 300}},
                           received_at=f"2026-{1 + i * 12 // n:02d}-15T12:00:00.000Z")
                 for i in range(start, min(n, start + 5000))]
        assert (await store.send(batch)).ok
        uuids += [e.uuid for e in batch]
    await store.aclose()
    return uuids


async def run_replay(config: str, cwd: str, *args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "replay", "--config", config, "--from", "archive",
        "--to", "posthog", *args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"replay exited {proc.returncode}: {err.decode()[-2000:]}")
    return time.perf_counter() - started, json.loads(out.decode().splitlines()[-1])


async def main(n: int) -> dict:
    fake = FakePostHog()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as work:
        config = Path(work) / "router.yaml"
        config.write_text(textwrap.dedent(f"""
            spool: {{path: {work}/spool.db}}
            backends:
              archive: {{type: store, url: "sqlite:///{work}/beacons.db"}}
              posthog:
                type: posthog
                host: "{fake.url}"
                api_key: {API_KEY}
                distinct_id: installation_id
                batch: {{max_events: 1000, max_wait: 10ms}}
            """))
        started = time.perf_counter()
        uuids = await fill(str(config), n)
        filled = time.perf_counter() - started
        first, summary1 = await run_replay(str(config), work)
        assert fake.received_total == n and set(fake.accepted) == set(uuids), "first run"
        second, summary2 = await run_replay(str(config), work, "--restart")
        assert fake.received_total == 2 * n and set(fake.accepted) == set(uuids), "second run"
    await runner.cleanup()
    return {
        "events": n,
        "archive_fill_seconds": round(filled, 2),
        "first_run_seconds": round(first, 2),
        "second_run_seconds": round(second, 2),
        "events_per_second": round(n / min(first, second)),
        "posthog_requests": len(fake.requests),
        "received_total": fake.received_total,
        "distinct_uuids_at_posthog": len(fake.accepted),
        "each_uuid_once": len(fake.accepted) == n,
        "delivered": [summary1["delivered"], summary2["delivered"]],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    result = asyncio.run(main(parser.parse_args().events))
    print(json.dumps(result, indent=2))
    (BENCH / "results" / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
