"""What ``appendfsync everysec`` (or ``always``) loses when redis-server is killed with -9.

Each trial: a redis-server of its own (AOF on, the given ``appendfsync``), a real router on it
(Redis spool) whose webhook backend is down, so every acknowledged event stays in the stream;
16 clients post beacons; redis-server is killed -9 at a random moment under that load; then it
is restarted from its AOF, the webhook comes up, and what arrives is compared with what was
acknowledged (202). Lost = acknowledged and never delivered.

    .venv/bin/python bench/faults/redis_everysec.py --appendfsync everysec --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time

import aiohttp

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the same helpers the suite's fault tests use

from services import RedisServer  # noqa: E402
from support import RouterProcess, WebhookReceiver, free_port, send_beacon  # noqa: E402

CONFIG = """
# the beacons' own uuid is their event id: each acknowledged one is followed by it
sources: {{profiles: [{{name: test-beacon, paths: [/beacon], event_id: uuid}}]}}
spool: {{type: redis, url: "{url}", key_prefix: everysec}}
backends:
  hook:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    batch: {{max_events: 200, max_wait: 20ms}}
    retry: {{initial: 50ms, max: 300ms, give_up_after: 1h}}
"""


async def trial(appendfsync: str, seconds: float) -> dict[str, float]:
    redis = RedisServer(appendfsync=appendfsync)
    receiver = WebhookReceiver()
    workdir = tempfile.mkdtemp(prefix="everysec-")
    with open(os.path.join(workdir, "router.yaml"), "w") as fh:
        fh.write(CONFIG.format(url=redis.url, port=receiver.port))
    router = RouterProcess(os.path.join(workdir, "router.yaml"), free_port(), workdir)
    try:
        redis.start()
        router.start()
        await router.wait_ready()
        acked: list[str] = []
        stop = time.monotonic() + seconds

        async def client(http: aiohttp.ClientSession) -> None:
            while time.monotonic() < stop:
                await send_beacon(http, router.url, acked)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            clients = [asyncio.create_task(client(http)) for _ in range(16)]
            await asyncio.sleep(random.uniform(seconds * 0.3, seconds * 0.7))
            before_kill = len(acked)
            redis.kill9()
            await asyncio.gather(*clients)
        redis.start()
        await receiver.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until delivery stops growing
            seen = len(receiver.received())
            await asyncio.sleep(2)
            if seen == len(receiver.received()) and seen:
                break
        delivered = set(receiver.received())
        lost = [u for u in acked if u not in delivered]
        return {"acked": len(acked), "acked_before_kill": before_kill, "lost": len(lost),
                "delivered": len(delivered)}
    finally:
        router.stop()
        await receiver.stop()
        redis.remove()
        shutil.rmtree(workdir, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appendfsync", default="everysec", choices=["always", "everysec", "no"])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="load per trial")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    results = []
    for n in range(args.trials):
        result = await trial(args.appendfsync, args.seconds)
        print(f"trial {n + 1}: {result}", flush=True)
        results.append(result)
    summary = {"appendfsync": args.appendfsync, "trials": results,
               "lost_total": sum(r["lost"] for r in results),
               "acked_total": sum(r["acked"] for r in results),
               "lost_max": max(r["lost"] for r in results)}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    asyncio.run(main())
