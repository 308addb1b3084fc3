"""Profile the router under load: py-spy samples it while wrk sends single beacons, then the
event loop's time is split by what it was doing (pipeline, delivery, aiohttp, metrics, ...).

    .venv/bin/python bench/profile.py                    # scenario 1's config, 10 s
    .venv/bin/python bench/profile.py --config posthog --seconds 15 --top 40
    .venv/bin/python bench/profile.py --pipeline none    # without the global pipeline
    .venv/bin/python bench/profile.py --load batch       # PostHog /batch/ bodies of 100 events

Needs py-spy (bench/setup installs it) and, as root or with ptrace allowed, permission to read
the router's memory. Writes the raw stacks to bench/results/tmp/profile-<config>.txt (open them
in speedscope, or aggregate them again with ``--from FILE``). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import configs
import suite
import wrk
from procs import tree_cpu

PY_SPY = Path(sys.executable).parent / "py-spy"

# A sample belongs to the first category whose marker is in its stack (outermost first).
CATEGORIES = (
    ("delivery workers", "Worker._run"),
    ("global pipeline", "Pipeline.__call__"),
    ("spool append (hand-off to the writer thread)", "SqliteSpool.append"),
    ("read_body", "read_body ("),
    ("decode (JSON)", "decode_beacons"),
    ("Event.new", "Event.new"),
    ("Event.to_json", "Event.to_json"),
    ("metrics (prometheus_client)", "prometheus_client"),
    ("json_response", "json_response"),
    ("request_context / rate limits", "request_context"),
    ("post_beacon, the rest", "post_beacon"),
    ("ingest_guard middleware", "ingest_guard"),
    ("error_middleware", "error_middleware"),
    ("aiohttp: write the response", "finish_response"),
    ("aiohttp: request handling", "_handle_request"),
    ("aiohttp: read and parse", "data_received"),
    ("aiohttp: connection task", "RequestHandler.start"),
)


def categorize(raw: Path, thread: str = "MainThread") -> tuple[int, Counter[str], Counter[str]]:
    """Samples of ``thread``: total, per category, and per innermost frame (self time)."""
    by_category: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if thread not in line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        by_frame[frames[-1]] += n
        for name, marker in CATEGORIES:
            if marker in stack:
                by_category[name] += n
                break
        else:
            # Only the event loop's own frame: uvloop's C code (sockets, timers, callbacks).
            by_category["event loop (uvloop, C)" if len(frames) <= 9 else "other"] += n
    return total, by_category, by_frame


def record(config: str, pipeline: str, seconds: int, raw: Path, load_kind: str = "beacon"
           ) -> dict[str, float]:
    """Run the router under load (single beacons, or scenario 2's PostHog batches) with
    py-spy attached; the load's figures."""
    up = suite.Upstream()
    try:
        data = suite.WORK / f"profile-{config}"
        doc = configs.with_posthog(data) if config == "posthog" else configs.default(data, up.port)
        if pipeline == "none":
            doc["pipeline"] = []
        with suite.router(f"profile-{config}", doc, up) as r:
            spy = subprocess.Popen(
                [
                    str(PY_SPY),
                    "record",
                    "--rate",
                    "250",
                    "--duration",
                    str(seconds),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--pid",
                    str(r.pid),
                    "--threads",
                    # the supervisor's children: the ingest and the delivery process
                    "--subprocesses",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # py-spy attaches
            before = tree_cpu(r.pid)
            if load_kind == "batch":  # as scenario 2 sends them: 16 connections
                load = wrk.run(r.url("/batch/"), "batch", seconds=seconds - 1, connections=16,
                               events_per_request=100)
            else:
                load = wrk.run(r.url("/beacon"), "beacon", seconds=seconds - 1)
            cpu = tree_cpu(r.pid) - before
            spy.wait(timeout=seconds + 30)
        return {
            "rps": round(load.rps),
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "cpu_us_per_request": round(cpu / max(1, load.requests) * 1e6, 1),
        }
    finally:
        up.proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        choices=["default", "posthog"],
        default="default",
        help="default: store + webhook (scenario 1); posthog: store + posthog",
    )
    parser.add_argument("--pipeline", choices=["shipped", "none"], default="shipped")
    parser.add_argument("--load", choices=["beacon", "batch"], default="beacon",
                        help="single beacons, or PostHog /batch/ bodies of 100 events")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25, help="functions listed by self time")
    parser.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        help="aggregate an earlier recording instead of recording",
    )
    args = parser.parse_args()
    raw = args.from_file or suite.WORK / f"profile-{args.config}.txt"
    if args.from_file is None:
        if not PY_SPY.exists() and shutil.which("py-spy") is None:
            print("bench/profile.py: py-spy is not installed; run bench/setup", file=sys.stderr)
            return 2
        suite.WORK.mkdir(parents=True, exist_ok=True)
        print(record(args.config, args.pipeline, args.seconds, raw, args.load))
    total, by_category, by_frame = categorize(raw)
    print(f"\nevent loop thread, {total} samples: where its time went")
    for name, n in by_category.most_common():
        print(f"  {100 * n / total:5.1f} %  {name}")
    print(f"\ntop {args.top} functions by self time (event loop thread)")
    for frame, n in by_frame.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
