"""The cost of each filter, in process: µs per event over a few thousand realistic beacons.

Each filter of the shipped pipeline and of the bench's privacy pipeline runs on its own over
fresh copies of the same events (decoded before the clock starts), so the figure is the filter's
own work, without HTTP, decoding or the spool. The clock is the thread's CPU time, so other
processes on a busy machine do not inflate it. Prints JSON.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import configs  # noqa: E402
from prefill import beacon  # noqa: E402

from router.config.loader import loads  # noqa: E402
from router.event import Event  # noqa: E402

EVENTS = 5000


def per_event_us(make_step: Callable[[], Any], docs: list[dict[str, Any]]) -> float:
    """µs per event of a step (best of 7 passes, each with a fresh step and fresh events)."""
    best = float("inf")
    for _ in range(7):
        step = make_step()  # a fresh dedupe has seen nothing yet
        events = [Event.new(orjson.loads(orjson.dumps(d))) for d in docs]
        started = time.thread_time()
        for event in events:
            step(event)
        best = min(best, time.thread_time() - started)
    return round(best / len(docs) * 1e6, 2)


def main() -> None:
    docs = [orjson.loads(beacon(n)) for n in range(EVENTS)]
    shipped = configs.shipped()["pipeline"]
    for step in shipped:
        if step.get("type") == "validate":
            step["schema"] = str(configs.SCHEMA)
    seen: set[str] = set()
    filters: dict[str, float] = {}
    for steps in (shipped, configs.privacy_steps()):
        config = loads(orjson.dumps({"pipeline": steps}).decode(), env=configs.router_env(1))
        for spec in config.pipeline:
            if spec.type in seen:
                continue
            seen.add(spec.type)
            filters[spec.type] = per_event_us(spec.build, docs)
    new_event = per_event_us(lambda: lambda e: Event.new(e.data), docs)
    to_json = per_event_us(lambda: lambda e: e.to_json(), docs)
    sys.stdout.write(
        orjson.dumps(
            {"events": EVENTS, "filters": filters, "event_new_us": new_event, "to_json_us": to_json}
        ).decode()
    )


if __name__ == "__main__":
    main()
