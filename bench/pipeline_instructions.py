"""Instructions per event of the shipped global pipeline, in process, under callgrind (~15 s).

The router's count (``instructions.py``) takes minutes and mixes the pipeline with HTTP, the
spool and delivery. This one runs only ``Pipeline.__call__`` over 2,000 realistic beacons
(``prefill.beacon``, decoded beforehand) with callgrind's counting switched on around the loop
by ``callgrind_control``, so a filter change is judged in seconds and without noise.

    .venv/bin/python bench/pipeline_instructions.py              # the whole shipped pipeline
    .venv/bin/python bench/pipeline_instructions.py --each       # and each step on its own
    .venv/bin/python bench/pipeline_instructions.py --payloads   # and the products' payloads

``--payloads`` runs the whole pipeline over each product's real payload instead
(tests/fixtures/reference/*.json, mapped by its source profile as ingest maps it): GitLab's
``counts`` has other keys and sizes than the bench's beacon.

Needs valgrind (bench/setup installs it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import configs  # noqa: E402
from prefill import beacon  # noqa: E402

from router.config.loader import loads  # noqa: E402
from router.event import Event, RequestContext  # noqa: E402
from router.filters import Pipeline  # noqa: E402
from router.sources.profile import RequestFacts  # noqa: E402

EVENTS = 2000
PAYLOADS = BENCH.parent / "tests" / "fixtures" / "reference"
# fixture → the source profile that maps it (config/sources/)
PROFILE_OF = {"gitlab.json": "gitlab", "docker.json": "docker", "nextcloud.json": "nextcloud",
              "plausible.json": "plausible", "discourse.json": "discourse",
              "mastodon.json": "mastodon", "operately_enhanced.json": "operately"}


def payload_events(config: Any, fixture: str, context: RequestContext) -> list[Event]:
    """EVENTS copies of a product's payload, each decoded and mapped by its profile."""
    profile = config.profiles.by_name[PROFILE_OF[fixture]]
    body = (PAYLOADS / fixture).read_bytes()
    return [Event.new(profile.map(orjson.loads(body), RequestFacts()), context=context,
                      profile=profile.name) for _ in range(EVENTS)]


def run_counted(step: int | None, fixture: str | None = None) -> None:
    """In the child under callgrind: the pipeline (or one step of it) over EVENTS beacons (or
    copies of a product's payload)."""
    os.environ.setdefault("BEACON_HASH_KEY", configs.HASH_KEY)
    with tempfile.TemporaryDirectory() as tmp:
        config = loads(yaml.safe_dump(configs.default(Path(tmp), 1)), "bench.yaml")
    pipeline = Pipeline(config.pipeline)
    if step is not None:
        pipeline = Pipeline._of([pipeline._steps[step]], None)
    context = RequestContext()
    if fixture is not None:
        for event in payload_events(config, fixture, context)[:50]:  # warm-up
            pipeline(event)
        events = payload_events(config, fixture, context)
    else:
        raw = [beacon(i) for i in range(EVENTS)]
        for body in raw[:50]:  # warm-up: caches, lazily built tables
            pipeline(Event.new(orjson.loads(body), context=context))
        events = [Event.new(orjson.loads(body), context=context) for body in raw]
    control = ["callgrind_control", "--instr=on", str(os.getpid())]
    subprocess.run(control, check=True, capture_output=True)
    for event in events:
        pipeline(event)
    control[1] = "--instr=off"
    subprocess.run(control, check=True, capture_output=True)


def count(step: int | None, fixture: str | None = None) -> float:
    """Instructions per event, counted in a child process under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        child = [sys.executable, __file__, "--child"] + ([] if step is None else [str(step)])
        if fixture is not None:
            child = [sys.executable, __file__, "--payload", fixture]
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/callgrind.out", *child],
            cwd=BENCH.parent, capture_output=True, text=True, check=True,
            # str hashes are salted per process; fixed, dict and set probes repeat exactly
            env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total: {done.stderr[-500:]}")
    return int(found.group(1)) / EVENTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--each", action="store_true", help="each step on its own as well")
    parser.add_argument("--payloads", action="store_true",
                        help="the pipeline over each product's payload as well")
    parser.add_argument("--child", nargs="?", const="", help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_counted(int(args.child) if args.child else None)
        return 0
    if args.payload is not None:
        run_counted(None, args.payload)
        return 0
    print(f"{'pipeline':12s} {count(None) / 1000:7.1f} k instructions per event", flush=True)
    if args.each:
        with tempfile.TemporaryDirectory() as tmp:
            config = loads(yaml.safe_dump(configs.default(Path(tmp), 1)), "bench.yaml",
                           env={"BEACON_HASH_KEY": configs.HASH_KEY})
        for index, spec in enumerate(config.pipeline):
            print(f"  {spec.type:10s} {count(index) / 1000:7.1f} k", flush=True)
    if args.payloads:
        for fixture in PROFILE_OF:
            print(f"  {fixture:24s} {count(None, fixture) / 1000:7.1f} k", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
