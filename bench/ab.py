"""Same-run A/B of scenario 1 (the shipped config with store + webhook) against another checkout:
events/s and p99, the two routers' runs alternated so that both see the same host.

    mkdir /tmp/before && git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python bench/ab.py --against /tmp/before                # single beacons
    .venv/bin/python bench/ab.py --against /tmp/before --load batch   # PostHog batches of 100

Each round starts this checkout's router, then the other's (``PYTHONPATH``), each with a 2 s
warm-up and two measured runs, and waits for its backlog to be delivered before stopping it.
The medians over the rounds are printed last. ~1 minute per round; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import os
import statistics

import configs
import wrk
from suite import WORK, Upstream, router, wait_port

LOADS = {  # script: (path, wrk options)
    "beacon": ("/beacon", {}),
    "batch": ("/batch/", {"connections": 16, "events_per_request": 100}),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="another checkout (its router/ is used)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", choices=sorted(LOADS), default="beacon")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    path, options = LOADS[args.load]
    runs: dict[str, list[wrk.Load]] = {"here": [], "against": []}
    up = Upstream()
    try:
        wait_port(up.port)
        for _ in range(args.rounds):
            for who in runs:
                if who == "against":
                    os.environ["PYTHONPATH"] = args.against
                else:
                    os.environ.pop("PYTHONPATH", None)
                name = f"ab-{who}"
                with router(name, configs.default(WORK / name, up.port), up) as r:
                    wrk.run(r.url(path), args.load, seconds=2, **options)  # type: ignore[arg-type]
                    for _ in range(2):
                        load = wrk.run(r.url(path), args.load, seconds=args.seconds,
                                       **options)  # type: ignore[arg-type]
                        runs[who].append(load)
                        print(f"{who:8s} {load.events_per_s:10,.0f} events/s  "
                              f"p99 {load.p99_ms:6.1f} ms", flush=True)
                    r.wait_drained(120)
    finally:
        os.environ.pop("PYTHONPATH", None)
        up.proc.stop()
    for who, loads in runs.items():
        print(f"{who:8s} median {statistics.median(x.events_per_s for x in loads):10,.0f} "
              f"events/s  p99 {statistics.median(x.p99_ms for x in loads):6.1f} ms "
              f"({len(loads)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
