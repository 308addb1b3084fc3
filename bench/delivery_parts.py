"""Instructions of the delivery process's parts, counted the way bench/instructions.py counts
(callgrind, switched on and off from inside the process), for same-run A/B of delivery work.

``router``: bench/instructions.py's ``router`` variant, every part (ingest, delivery,
supervisor) of this checkout and of each ``--against`` checkout, alternating ``--rounds`` times
(bench/instructions.py --against compares the ingest part only). Its delivery part holds costs
that grow with the counted phase's wall time (compaction passes, gauges every 5 s, timers), so
on a loaded machine it moves by ±20 k per event between runs of the same code: alternate.

``store``: a store worker delivering 2,000 spooled beacons (two batches of 1,000): decode,
rows, the SQLite insert on the store's thread, the ack. ``look``: 200 commits of 10 rows by an
ingest-role spool, each followed by the delivery role's look for them (``refresh_soon``) while
two workers wait for a batch of 1,000 to fill. Both run in one process and repeat exactly.

    .venv/bin/python bench/delivery_parts.py store look --against /tmp/main
    .venv/bin/python bench/delivery_parts.py router --against /tmp/main --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import instructions
import suite

BEACON = instructions.BEACON
N = 2000


async def store_part(toggle) -> None:  # type: ignore[no-untyped-def]
    import orjson

    from router.config.loader import loads
    from router.delivery import Worker
    from router.event import Event
    from router.metrics import Metrics
    from router.spool import SqliteSpool

    where = tempfile.mkdtemp()
    config = loads(f"backends:\n  archive:\n    type: store\n    url: sqlite:///{where}/b.db\n"
                   "    batch: {max_events: 1000}\n")
    spec = config.backends["archive"]
    spool = SqliteSpool(os.path.join(where, "spool.db"))
    await spool.open(["archive"])
    worker = Worker(spec, spec.build(), spool, Metrics())

    def bodies(start: int) -> list[bytes]:
        return [Event.new(orjson.loads(BEACON % (n % 0xFFFF, n, n % 500))).to_json()
                for n in range(start, start + 1000)]

    await spool.append(bodies(0))
    await worker.deliver(await spool.read("archive", 1000))  # warm-up: migrate, caches
    await spool.append(bodies(1000))
    await spool.append(bodies(2000))
    toggle.start()
    for _ in range(2):
        await worker.deliver(await spool.read("archive", 1000))
    toggle.stop()
    await worker.backend.aclose()
    await spool.close()


async def look_part(toggle) -> None:  # type: ignore[no-untyped-def]
    from router.spool import SqliteSpool

    path = os.path.join(tempfile.mkdtemp(), "spool.db")
    ingest = SqliteSpool(path, role="ingest")
    await ingest.open(["a", "b"])
    spool = SqliteSpool(path, role="delivery")
    await spool.open(["a", "b"])
    assert spool._poller is not None
    spool._poller.cancel()
    waits = [asyncio.create_task(spool.wait(b, 600, at_least=1000)) for b in ("a", "b")]
    await asyncio.sleep(0.1)
    toggle.start()
    for _ in range(200):
        await ingest.append([b'{"n":1}'] * 10)
        spool.refresh_soon()
        assert spool._refresher is not None
        await spool._refresher
    toggle.stop()
    for waiting in waits:
        waiting.cancel()
    await spool.close()
    await ingest.close()


def in_process(part: str, against: Path | None) -> int:
    """The instructions of ``part`` run in a child under callgrind (``against``'s router)."""
    env = {**os.environ, **instructions.toggle_env(against)}
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", part],
        env=env, cwd=suite.REPO, capture_output=True, text=True, check=True)
    return int(re.findall(r"Collected : (\d+)", run.stderr)[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["store", "look"])
    parser.add_argument("--against", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import ctypes

        toggle = ctypes.CDLL(os.environ["BENCH_CALLGRIND_TOGGLE"])
        asyncio.run({"store": store_part, "look": look_part}[args.child](toggle))
        return 0
    checkouts: list[Path | None] = [None, *(p.resolve() for p in args.against)]
    for part in args.parts:
        if part != "router":
            per = {"store": N, "look": 200}[part]
            for where in checkouts:
                n = in_process(part, where)
                print(f"{part:6s} {where or 'here'!s:24s} {n / per / 1000:8.1f} k per "
                      f"{'event' if part == 'store' else 'commit and look'}", flush=True)
            continue
        up = suite.Upstream()
        try:
            for _ in range(args.rounds):
                for where in checkouts:
                    parts = instructions.count("router", N, up, where)
                    shown = ", ".join(f"{k} {v / N / 1000:.1f}k" for k, v in sorted(parts.items()))
                    print(f"router {where or 'here'!s:24s} {shown}", flush=True)
        finally:
            up.proc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
