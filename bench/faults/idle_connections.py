"""Beacons served while N idle connections are open (slowloris without a byte), against a
same-run baseline with none: requests/s and p99 latency of 16 clients, the ratio of the two.

    .venv/bin/python bench/faults/idle_connections.py --idle 10000

The router's ``server.header_timeout`` is raised to 120 s here, so the idle connections stay
open for the whole measurement (by default they are cut after 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import sys
import tempfile
import time

import aiohttp

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support import RouterProcess, free_port, send_beacon  # noqa: E402

CONFIG = """
server: {header_timeout: 120s}
spool: {path: ./spool.db}
backends:
  out: {type: file, path: ./out.jsonl}
"""


async def measure(url: str, requests: int) -> dict[str, float]:
    latencies: list[float] = []
    acked: list[str] = []

    async def client(http: aiohttp.ClientSession, n: int) -> None:
        for _ in range(n):
            t = time.perf_counter()
            await send_beacon(http, url, acked)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(client(http, requests // 16) for _ in range(16)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "acked": len(acked),
            "rps": round(len(latencies) / elapsed, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)}


def open_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        socks.append(sock)
    return socks


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="idle-")
    with open(os.path.join(workdir, "router.yaml"), "w") as fh:
        fh.write(CONFIG)
    router = RouterProcess(os.path.join(workdir, "router.yaml"), free_port(), workdir)
    router.start()
    try:
        await router.wait_ready()
        assert router.proc is not None
        baseline = await measure(router.url, args.requests)
        idle = open_idle(router.port, args.idle)
        await asyncio.sleep(2)  # let the router accept them all
        fds = open_fds(router.proc.pid)
        loaded = await measure(router.url, args.requests)
        for sock in idle:
            sock.close()
        result = {"idle": args.idle, "router_fds_with_idle": fds, "baseline": baseline,
                  "with_idle": loaded, "rps_ratio": round(loaded["rps"] / baseline["rps"], 3)}
        print(json.dumps(result))
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(result, fh, indent=1)
    finally:
        router.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
