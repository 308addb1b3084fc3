"""Queue N events in a SQLite spool, as if every backend had been down while they arrived.

The events are what the router would have spooled: a few thousand distinct beacons go through
the config's real pipeline, then each of the N copies gets its own uuid and installation-id hash
(same lengths), so the spool holds N distinct events of realistic size. They are written with
the router's own ``SqliteSpool`` (one transaction per chunk), with a cursor at 0 for each backend.

    python bench/prefill.py --config CONFIG --events 1000000 --backends archive,posthog,hooks
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from router.config.loader import load  # noqa: E402
from router.event import Event  # noqa: E402
from router.filters import Pipeline  # noqa: E402
from router.spool.sqlite import SqliteSpool  # noqa: E402

BEACON = (
    '{"installation_id":"%08x-0001-4a1e-9f3c-%012x","version":"2.4.%d",'
    '"platform":{"os":"linux","architecture":"amd64","os_version":"Debian 12",'
    '"distribution":"docker"},"deployment_type":"docker-compose",'
    '"timestamp":"2025-11-28T00:%02d:%02dZ","counts":{"users":%d,"projects":%d,'
    '"goals":%d,"spaces":%d},"usage_metrics":{"active_users_7d":%d,"logins_30d":%d},'
    '"features_enabled":["sso","ai_summaries"],"telemetry":true}'
)
"""The same beacon bench/lua/beacon.lua sends (~400 bytes)."""

DISTINCT = 2000
CHUNK = 5000


def beacon(n: int) -> bytes:
    return (
        BEACON
        % (
            0x5EED0000,
            n,
            n % 9,
            n % 60,
            n % 59,
            n % 500,
            n % 90,
            n % 300,
            n % 12,
            n % 400,
            n % 1000,
        )
    ).encode()


def spooled_templates(config_path: str) -> list[dict[str, object]]:
    """Distinct beacons as the pipeline leaves them, in their persisted (spool) form."""
    config = load(config_path)
    pipeline = Pipeline(config.pipeline)
    out = []
    for n in range(DISTINCT):
        event = pipeline(Event.new(orjson.loads(beacon(n))))
        if event is not None:
            out.append(event.to_dict())
    return out


async def fill(config_path: str, events: int, backends: list[str]) -> dict[str, float]:
    config = load(config_path)
    templates = spooled_templates(config_path)
    spool = SqliteSpool(config.spool.path, synchronous="FULL")
    started = time.perf_counter()
    await spool.open(backends)
    try:
        written = 0
        while written < events:
            bodies = []
            for i in range(written, min(events, written + CHUNK)):
                doc = templates[i % len(templates)]
                data = dict(doc["data"])  # type: ignore[arg-type]
                if "installation_id" in data:
                    data["installation_id"] = f"{i:064x}"  # the length of an HMAC-SHA256 hex
                bodies.append(orjson.dumps({**doc, "uuid": _uuid(i), "data": data}))
            await spool.append(bodies)
            written += len(bodies)
    finally:
        await spool.close()
    seconds = time.perf_counter() - started
    size = sum(os.path.getsize(p) for p in _spool_files(config.spool.path))
    return {
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "spool_bytes": size,
        "spool_bytes_per_event": round(size / events, 1),
        "body_bytes_per_event": round(len(bodies[-1]), 1),
    }


def _uuid(i: int) -> str:
    h = f"{i:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"


def _spool_files(path: str) -> list[str]:
    return [p for p in (path, path + "-wal", path + "-shm") if os.path.exists(p)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backends", required=True, help="comma-separated backend names")
    args = parser.parse_args()
    result = asyncio.run(fill(args.config, args.events, args.backends.split(",")))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
