"""Ingest throughput of one vs two router instances sharing one Redis stream (docs/scaling.md).

    .venv/bin/python bench/redis_scaleout.py [--seconds 8] [--runs 3] [--connections 64]
                                             [--appendfsync always|everysec|no]

Starts its own ``redis-server`` on a free loopback port (AOF on, with the ``appendfsync`` asked
for, in bench/results/tmp/), the webhook stand-in (bench/upstream.py), and the routers with the
shipped privacy pipeline, ``spool: {type: redis}`` and one webhook backend. The load is two wrk
processes of ``connections / 2`` each, POSTing bench/lua/beacon.lua's ~400-byte beacons for
``seconds``: both at the one instance, or one at each of the two (what a round-robin load
balancer does), so the client side is the same in both cases. Everything listens on 127.0.0.1.
Writes bench/results/redis_scaleout_<appendfsync>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import configs
import wrk
from procs import LOOPBACK, Proc, free_port, tree_cpu, wait_port
from suite import RESULTS, WORK, Router, Upstream


def redis_server(port: int, appendfsync: str) -> Proc:
    data = WORK / f"redis-{port}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    argv = [
        "redis-server",
        "--bind",
        LOOPBACK,
        "--port",
        str(port),
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
    ]
    proc = Proc(f"redis-{port}", argv, WORK)
    wait_port(port, proc=proc.popen)
    return proc


def config(upstream: Upstream, redis_port: int, prefix: str) -> dict[str, Any]:
    doc = configs.pipeline_only(WORK / prefix, upstream.port, configs.privacy_steps())
    doc["spool"] = {
        "type": "redis",
        "url": f"redis://{LOOPBACK}:{redis_port}/0",
        "key_prefix": prefix,
    }
    return doc


def measure(urls: list[str], seconds: int, connections: int) -> dict[str, Any]:
    """Two wrk processes at once, one per URL of ``urls`` (repeated for a single instance)."""
    targets = (urls * 2)[:2]
    with ThreadPoolExecutor(2) as pool:
        loads = list(
            pool.map(
                lambda url: wrk.run(
                    f"{url}/beacon", "beacon", seconds=seconds, connections=connections // 2
                ),
                targets,
            )
        )
    return {
        "acked_per_s": round(sum(load.acked / load.seconds for load in loads), 1),
        "rejected": sum(load.rejected for load in loads),
        "errors": sum(sum(load.errors.values()) for load in loads),
        "p50_ms": round(max(load.p50_ms for load in loads), 2),
        "p99_ms": round(max(load.p99_ms for load in loads), 2),
    }


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def scenario(
    instances: int, upstream: Upstream, redis: Proc, redis_port: int, args: argparse.Namespace
) -> dict[str, Any]:
    prefix = f"bench-{instances}x-{os.getpid()}"
    doc = config(upstream, redis_port, prefix)
    routers = [Router(f"redis-{instances}x-{i}", doc, upstream) for i in range(instances)]
    try:
        urls = [r.url("") for r in routers]
        measure(urls, 1, args.connections)  # warm-up: connections, first-use paths
        pids = {"routers": [r.pid for r in routers], "redis": [redis.pid]}
        before = {k: sum(tree_cpu(p) for p in v) for k, v in pids.items()}
        busy0, total0 = machine_cpu()
        started = time.monotonic()
        runs = [measure(urls, args.seconds, args.connections) for _ in range(args.runs)]
        wall = time.monotonic() - started
        busy1, total1 = machine_cpu()
        cores = {
            k: round((sum(tree_cpu(p) for p in v) - before[k]) / wall, 2) for k, v in pids.items()
        }
    finally:
        for r in routers:
            r.stop()
    rates = [run["acked_per_s"] for run in runs]
    return {
        "instances": instances,
        "acked_per_s_median": statistics.median(rates),
        "acked_per_s_min": min(rates),
        "acked_per_s_max": max(rates),
        "cores_used": cores,
        # The mean over the runs, per core the routers used in them: what one router core
        # ingests, whatever else the machine was busy with.
        "acked_per_router_core": round(statistics.mean(rates) / cores["routers"], 1),
        "machine_busy": round((busy1 - busy0) / (total1 - total0), 3),
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--appendfsync", default="everysec", choices=["always", "everysec", "no"])
    args = parser.parse_args()
    if not wrk.available() or shutil.which("redis-server") is None:
        print("needs wrk and redis-server (bench/setup installs wrk)")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.time()
    redis_port = free_port()
    redis = redis_server(redis_port, args.appendfsync)
    upstream = Upstream()
    try:
        results = [scenario(n, upstream, redis, redis_port, args) for n in (1, 2)]
    finally:
        upstream.proc.stop()
        redis.stop()
    one, two = results
    summary = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "settings": vars(args),
        "results": results,
        "two_vs_one": round(two["acked_per_s_median"] / one["acked_per_s_median"], 3),
    }
    out = RESULTS / f"redis_scaleout_{args.appendfsync}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"appendfsync {args.appendfsync}, {args.runs} runs x {args.seconds:g} s, "
        f"{args.connections} connections, {os.cpu_count()} CPUs\n"
    )
    print(
        "| instances | acked req/s median (min-max) | p50 ms | p99 ms | CPU cores: routers, "
        "redis | req/s per router core | machine busy |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        last, cores = r["runs"][-1], r["cores_used"]
        print(
            f"| {r['instances']} | {r['acked_per_s_median']:,.0f} "
            f"({r['acked_per_s_min']:,.0f}-{r['acked_per_s_max']:,.0f}) "
            f"| {last['p50_ms']} | {last['p99_ms']} | {cores['routers']}, {cores['redis']} "
            f"| {r['acked_per_router_core']:,.0f} | {r['machine_busy']:.0%} |"
        )
    print(
        f"\ntwo / one: {summary['two_vs_one']} x   ({Path(out).relative_to(RESULTS.parent.parent)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
