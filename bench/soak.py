"""Soak: a real router under mixed load for a long time, with backends flapping, a SIGHUP reload
every minute and kill -9 of the router at random points. Afterwards: acknowledged vs delivered
(0 lost), duplicates counted, and after each drain the router's RSS, open descriptors and spool
size, which must stay flat.

    .venv/bin/python bench/soak.py --minutes 30 --kills 20 --out bench/results/soak_30min.json

The run is cut into ``--kills`` cycles. In each: 8 clients post single beacons to /beacon and 2
post PostHog batches of 10 events to /batch/; the flapping receiver (bench/faults/flapper.py)
switches every few seconds between 200, 500, 503, 429 + Retry-After and hanging past the
router's 1 s timeout, for the webhook and the PostHog backend alike; the router gets SIGHUP every
``--reload-every`` seconds and one kill -9 at a random moment (it is restarted at once). At the
end of a cycle the load pauses, the receiver answers 200, and the router drains: then the
figures are taken. tests/faults/test_soak.py runs a short version of this in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from typing import Any

import aiohttp

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(BENCH, "faults"), os.path.join(os.path.dirname(BENCH), "tests")]

from flapper import Flapper  # noqa: E402
from support import RouterProcess, free_port  # noqa: E402

CONFIG = """
# the beacons' own uuid is their event id: each acknowledged one is followed by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
spool: {{path: ./spool.db}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout: 1s
    batch: {{max_events: 100, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 1s, give_up_after: 24h}}
  posthog:
    type: posthog
    host: http://127.0.0.1:{port}
    api_key: phc_soak
    timeout: 1s
    batch: {{max_events: 100, max_wait: 50ms}}
    retry: {{initial: 50ms, max: 1s, give_up_after: 24h}}
"""
BACKENDS = {"hook": "/hook", "posthog": "/batch/"}
MAX_EVENTS = 100  # per delivery batch, as configured above


class Load:
    """Clients posting until told to pause or stop; ``acked`` holds every uuid answered 2xx."""

    def __init__(self, router: RouterProcess) -> None:
        self.router = router
        self.acked: list[str] = []
        self.answers: dict[int, int] = {}
        self.running = asyncio.Event()
        self.stopped = False

    async def single(self, http: aiohttp.ClientSession) -> None:
        while not self.stopped:
            await self.running.wait()
            event = {"uuid": str(uuid.uuid4()), "installation_id": str(uuid.uuid4()),
                     "version": "1.4.2", "counts": {"users": random.randint(1, 500)}}
            await self._post(http, "/beacon", event, [str(event["uuid"])])

    async def posthog(self, http: aiohttp.ClientSession) -> None:
        while not self.stopped:
            await self.running.wait()
            batch = [{"event": "soak", "distinct_id": str(uuid.uuid4()), "uuid": str(uuid.uuid4()),
                      "properties": {"n": i}} for i in range(10)]
            await self._post(http, "/batch/", {"api_key": "phc_soak", "batch": batch},
                             [e["uuid"] for e in batch])

    async def _post(self, http: aiohttp.ClientSession, path: str, body: Any,
                    uuids: list[str]) -> None:
        try:
            async with http.post(self.router.url + path, json=body) as resp:
                self.answers[resp.status] = self.answers.get(resp.status, 0) + 1
                if 200 <= resp.status < 300:
                    self.acked.extend(uuids)
        except (aiohttp.ClientError, TimeoutError):
            self.answers[0] = self.answers.get(0, 0) + 1  # no answer: nothing owed
            await asyncio.sleep(0.05)


def router_figures(router: RouterProcess, workdir: str) -> dict[str, int]:
    assert router.proc is not None
    pid = router.proc.pid
    with open(f"/proc/{pid}/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    spool = sum(os.path.getsize(os.path.join(workdir, f)) for f in os.listdir(workdir)
                if f in ("spool.db", "spool.db-wal"))  # not the constant reserve file
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "spool_bytes": spool}


async def queued(http: aiohttp.ClientSession, router: RouterProcess) -> int | None:
    try:
        async with http.get(f"{router.url}/readyz") as resp:
            body = await resp.json()
            return sum(b["queued"] for b in body["backends"].values())
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
        return None


async def soak(seconds: float, kills: int, reload_every: float, flap_every: float,
               seed: int, workdir: str, log=print) -> dict[str, Any]:
    random.seed(seed)
    flapper = Flapper(free_port(), hang=3.0, seed=seed)
    await flapper.start()
    with open(os.path.join(workdir, "router.yaml"), "w") as fh:
        fh.write(CONFIG.format(port=flapper.port))
    router = RouterProcess(os.path.join(workdir, "router.yaml"), free_port(), workdir)
    router.start()
    await router.wait_ready()
    load = Load(router)
    load.running.set()
    cycles: list[dict[str, Any]] = []
    reloads = 0
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        clients = ([asyncio.create_task(load.single(http)) for _ in range(8)]
                   + [asyncio.create_task(load.posthog(http)) for _ in range(2)])
        cycle_len = seconds / kills
        next_reload = time.monotonic() + reload_every
        for cycle in range(kills):
            end = time.monotonic() + cycle_len
            kill_at = time.monotonic() + random.uniform(0.1, 0.9) * cycle_len
            killed = False
            next_flap = time.monotonic()
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_flap:
                    flapper.flap()
                    next_flap = now + random.uniform(0.5, flap_every)
                if now >= next_reload:
                    assert router.proc is not None
                    router.proc.send_signal(signal.SIGHUP)
                    reloads += 1
                    next_reload = now + reload_every
                if not killed and now >= kill_at:
                    router.kill9()
                    router.start()
                    await router.wait_ready(60)
                    killed = True
                await asyncio.sleep(0.1)
            # Drain: load paused, the backends healthy, every queue empty.
            load.running.clear()
            flapper.healthy = True
            deadline = time.monotonic() + 180
            while await queued(http, router) != 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            figures = router_figures(router, workdir)
            figures.update(cycle=cycle + 1, acked=len(load.acked),
                           missing={b: len(set(load.acked) - set(flapper.delivered[p]))
                                    for b, p in BACKENDS.items()})
            cycles.append(figures)
            log(json.dumps(figures))
            flapper.healthy = False
            load.running.set()
        load.stopped = True
        load.running.set()
        await asyncio.gather(*clients)
    flapper.healthy = True
    async with aiohttp.ClientSession(timeout=timeout) as http:
        deadline = time.monotonic() + 180
        while await queued(http, router) != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    exit_code = router.terminate()
    await flapper.stop()
    acked = set(load.acked)
    result: dict[str, Any] = {
        "seconds": round(time.monotonic() - started), "kills": kills, "reloads": reloads,
        "acked": len(acked), "answers": load.answers, "receiver_answers": dict(flapper.answers),
        "exit_code_after_sigterm": exit_code, "cycles": cycles,
        # Redelivery happens only for a batch in flight at a kill: at most the batches each
        # backend had in flight, times the number of kills.
        "duplicate_bound": kills * MAX_EVENTS * 4,
        "workdir": workdir,
    }
    for backend, path in BACKENDS.items():
        got = flapper.delivered[path]
        result[backend] = {"delivered": len(acked & set(got)), "lost": len(acked - set(got)),
                           "duplicates": sum(n - 1 for n in got.values() if n > 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds between SIGHUPs")
    parser.add_argument("--flap-every", type=float, default=5.0, help="longest mode, seconds")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", default="")
    parser.add_argument("--keep", action="store_true", help="keep the router's directory")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="soak-")
    try:
        result = asyncio.run(soak(args.minutes * 60, args.kills, args.reload_every,
                                  args.flap_every, args.seed, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k != "cycles"}))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
    lost = sum(result[b]["lost"] for b in BACKENDS)
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
