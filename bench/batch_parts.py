"""Instructions per event of each step of the PostHog batch path, in process, under callgrind.

``instructions.py --only batch`` counts the whole ingest process (HTTP, the spool, its writer
thread); this splits the event loop's own work on scenario 2's batches (bench/lua/batch.lua's
events, 100 a body) into the steps ``web/posthog.py`` takes, each counted on its own in a child
under callgrind with counting switched on around it (``callgrind_control``), ~1 minute:

    decode    decode_v0: the body's JSON, the depth bound, the SDK events' loop
    event     the posthog profile's map, the uuid stamp and the Event
    pipeline  the shipped global pipeline (``--each``: every step on its own as well)
    to_json   the spooled bytes

    .venv/bin/python bench/batch_parts.py [--each]

``BEACON_ROUTER_PURE_PYTHON=1`` counts the pure-Python twins of the C modules instead. Needs
valgrind (bench/setup).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import configs  # noqa: E402

from router.config.loader import loads  # noqa: E402
from router.event import Event, RequestContext, iso_z, stamped  # noqa: E402
from router.filters import Pipeline  # noqa: E402
from router.ingest.limits import Limits  # noqa: E402
from router.ingest.posthog import Capture, decode_v0  # noqa: E402
from router.sources.profile import RequestFacts  # noqa: E402

BODIES = 20  # counted, of 100 events each; two more warm up
STEPS = ("decode", "event", "pipeline", "to_json")
EVENT = ('{"event":"installation_heartbeat","distinct_id":"%08x-%08x",'
         '"uuid":"%08x-%04x-4%03x-8%03x-%012x","timestamp":"2025-11-28T00:%02d:%02dZ",'
         '"properties":{"version":"2.4.%d","platform":"linux","deployment_type":"docker-compose",'
         '"users":%d,"projects":%d,"goals":%d,"$lib":"posthog-python","$lib_version":"3.7.0"}}')


def bodies(count: int, sender: int = 7) -> list[bytes]:
    """``count`` batch bodies as bench/lua/batch.lua sends them (one sender, unique events)."""
    out, n = [], 0
    for _ in range(count):
        events = []
        for _ in range(100):
            n += 1
            events.append(EVENT % (sender, n, sender, n % 0x10000, n % 0x1000, sender, n,
                                   n % 60, n % 59, n % 9, n % 500, n % 90, n % 300))
        out.append(('{"api_key":"phc_bench","batch":[' + ",".join(events) + "]}").encode())
    return out


def _counting(on: bool) -> None:
    subprocess.run(["callgrind_control", f"--instr={'on' if on else 'off'}", str(os.getpid())],
                   check=True, capture_output=True)


def run_counted(step: str, pipeline_step: int | None) -> None:
    """In the child under callgrind: the steps before ``step`` uncounted, ``step`` counted."""
    os.environ.setdefault("BEACON_HASH_KEY", configs.HASH_KEY)
    with tempfile.TemporaryDirectory() as tmp:
        config = loads(yaml.safe_dump(configs.default(Path(tmp), 1)), "bench.yaml")
    pipeline = Pipeline(config.pipeline)
    if pipeline_step is not None:
        pipeline = Pipeline._of([pipeline._steps[pipeline_step]], None)
    profile, facts, context = config.profiles.posthog, RequestFacts(), RequestContext()
    assert profile is not None
    now, limits = datetime.now(UTC), Limits()
    received_at = iso_z(now)

    def decode(body: bytes) -> Capture:
        return decode_v0(body, query={}, content_type="application/json", engage=False,
                         now=now, limits=limits)

    def events(capture: Capture) -> list[Event]:  # as web/posthog.py's _make_durable
        return [Event(stamped(uuid), received_at, name, profile.map(data, facts), "posthog",
                      profile.name, context) for name, data, uuid in capture.events]

    warm = bodies(BODIES + 2)
    for body in warm[:2]:  # caches, lazily built tables
        for event in events(decode(body)):
            if pipeline(event) is not None:
                event.to_json()
    counted: Any = warm[2:]
    for name, work in (("decode", decode), ("event", events)):
        if step == name:
            _counting(True)
            [work(item) for item in counted]
            _counting(False)
            return
        counted = [work(item) for item in counted]
    counted = [event for batch in counted for event in batch]
    if step == "pipeline":
        _counting(True)
        [pipeline(event) for event in counted]
        _counting(False)
        return
    kept = [event for event in map(pipeline, counted) if event is not None]
    _counting(True)
    [event.to_json() for event in kept]
    _counting(False)


def count(step: str, pipeline_step: int | None = None) -> float:
    """Instructions per event of ``step``, counted in a child process under callgrind."""
    child = [sys.executable, __file__, "--child", step]
    if pipeline_step is not None:
        child.append(str(pipeline_step))
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/callgrind.out", *child],
            cwd=BENCH.parent, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"})  # dict and set probes repeat exactly
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total: {done.stderr[-500:]}")
    return int(found.group(1)) / (BODIES * 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--each", action="store_true", help="each pipeline step as well")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_counted(args.child[0], int(args.child[1]) if len(args.child) > 1 else None)
        return 0
    total = 0.0
    for step in STEPS:
        per_event = count(step)
        total += per_event
        print(f"{step:10s} {per_event / 1000:7.1f} k instructions per event", flush=True)
        if step == "pipeline" and args.each:
            with tempfile.TemporaryDirectory() as tmp:
                config = loads(yaml.safe_dump(configs.default(Path(tmp), 1)), "bench.yaml",
                               env={"BEACON_HASH_KEY": configs.HASH_KEY})
            for index, spec in enumerate(config.pipeline):
                print(f"  {spec.type:10s} {count(step, index) / 1000:7.1f} k", flush=True)
    print(f"{'all four':10s} {total / 1000:7.1f} k", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
