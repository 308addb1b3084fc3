"""How long the installed-base statistics take over a store of 1M beacons (SQLite).

    .venv/bin/python bench/stats_query.py                    # 1M beacons in a temp dir
    .venv/bin/python bench/stats_query.py --beacons 200000   # smaller
    .venv/bin/python bench/stats_query.py --keep /tmp/b.db   # keep (or reuse) the file

The store file is generated in bulk: the real store's table and indexes (``SqliteStore``
migrates it), then rows in time order, as the router appends them, with ``executemany`` in
one transaction. ``--installations`` installations beacon daily (90% of days) over ``--days``
days ending today, each for a random life span, upgrading through versions as time passes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.backends.store.sqlite import SqliteStore
from router.config.loader import loads
from router.stats import Range, Stats


def generate(path: Path, beacons: int, installations: int, days: int) -> float:
    """Write ``beacons`` rows into a new store at ``path``; return the seconds it took."""
    started = time.perf_counter()
    store = SqliteStore(path, "beacons", name="bench")
    asyncio.run(_migrate(store))
    rng = random.Random(1)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days - 1)
    per_day: list[list[int]] = [[] for _ in range(days)]
    made = 0
    while made < beacons:  # more passes if the first one falls short of the count asked
        for n in range(installations):
            first, life = rng.randrange(days), rng.randrange(30, days + 1)
            for d in range(first, min(days, first + life)):
                if rng.random() < 0.9 and made < beacons:
                    per_day[d].append(n)
                    made += 1
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    seq = 0
    for d, todays in enumerate(per_day):
        rows = []
        for n in todays:
            seq += 1
            when = start + timedelta(days=d, seconds=rng.randrange(86400))
            hashed = hashlib.sha256(str(n).encode()).hexdigest()  # as the hash filter makes
            version = f"2.{min(9, d * 10 // days)}.{rng.randrange(3)}"
            data = {
                "installation_id": hashed,
                "version": version,
                "platform": {
                    "os": rng.choice(["linux", "linux", "darwin", "windows"]),
                    "architecture": "x86_64",
                },
                "deployment_type": rng.choice(["docker", "docker", "kubernetes", "source"]),
                "counts": {"users": "11-50", "projects": "0-10"},
            }
            # Sequential uuids append to the primary key's B-tree: generation is 3x faster, and
            # statistics never read the key.
            rows.append(
                (
                    f"{seq:032x}",
                    when.isoformat(timespec="milliseconds")[:23] + "Z",
                    "beacon",
                    "beacon",
                    hashed,
                    version,
                    orjson.dumps(data).decode(),
                )
            )
        rows.sort(key=lambda r: r[1])
        conn.executemany('INSERT INTO "beacons" VALUES (?, ?, ?, ?, ?, ?, ?)', rows)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


async def _migrate(store: SqliteStore) -> None:
    await store.migrate()
    await store.aclose()


async def measure(path: Path) -> list[tuple[str, float, str]]:
    """(what, seconds, note) for each step, in order."""
    config = loads(f'backends:\n  archive: {{type: store, url: "sqlite:///{path}"}}\n')
    stats = Stats.from_config(config, recheck=0)
    assert stats is not None
    today = stats.today()
    before = rss_mib()
    out: list[tuple[str, float, str]] = []

    async def timed(what: str, step, note: str = "") -> object:
        started, cpu = time.perf_counter(), time.process_time()
        result = await step
        # CPU seconds of the whole process (every thread): steadier than the wall clock on a
        # machine shared with other work.
        cpu_ms = (time.process_time() - cpu) * 1000
        out.append((what, time.perf_counter() - started, f"cpu {cpu_ms:.0f} ms. {note}"))
        return result

    try:
        await timed("cold: read every stored day into the index", stats.index.refresh(today))
        out[-1] = (
            *out[-1][:2],
            f"{out[-1][2]}{stats.index.installations} installations, "
            f"{len(stats.index.days)} days, index {index_mib(stats):.1f} MiB, "
            f"+{rss_mib() - before:.0f} MiB resident",
        )
        stats.index.recheck = stats.index.full_recheck = 3600.0  # the reports' own cost
        for days, granularity in ((30, "day"), (90, "day"), (365, "week"), (365, "month")):
            span = Range.parse(None, None, granularity, today, default_days=days)
            await timed(f"report: {days} days by {granularity}", stats.report(span))
        stats.index.recheck = stats.index.full_recheck = 0.0
        await timed(
            "check of every day, none changed", stats.index.refresh(today), "at most every 5 min"
        )
        stats.index.full_recheck = 3600.0
        await timed(
            "check of the last 4 days, none changed",
            stats.index.refresh(today),
            "at most every 10 s",
        )
        stats._public = None
        await timed("public report (k-anonymous, 30 days)", stats.public())
        plan = await stats.reader.plan(today - timedelta(days=29), today + timedelta(days=1))
        out.append(("rows query plan", 0.0, plan.replace("\n", "; ")))
    finally:
        await stats.aclose()
    return out


def naive_sql(path: Path) -> float:
    """For comparison: one count(DISTINCT) per day over 90 days, straight in SQLite."""
    today = datetime.now(UTC).date()
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    started = time.perf_counter()
    conn.execute(
        "SELECT substr(received_at, 1, 10) AS day, count(DISTINCT distinct_id) "
        "FROM beacons WHERE received_at >= ? GROUP BY day",
        ((today - timedelta(days=89)).isoformat(),),
    ).fetchall()
    conn.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beacons", type=int, default=1_000_000)
    parser.add_argument("--installations", type=int, default=8000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--keep", type=Path, help="store file to keep, or to reuse if present")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stats-bench-") as tmp:
        path = args.keep or Path(tmp) / "beacons.db"
        if path.exists():
            print(f"reusing {path}")
        else:
            took = generate(path, args.beacons, args.installations, args.days)
            print(
                f"generated {args.beacons:,} beacons in {took:.1f} s "
                f"({path.stat().st_size / 2**20:.0f} MiB)"
            )
        rows = sqlite3.connect(path).execute("SELECT count(*) FROM beacons").fetchone()[0]
        print(
            f"store: {rows:,} rows, SQLite {sqlite3.sqlite_version}, Python "
            f"{sys.version.split()[0]}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f}\n"
        )
        for what, seconds, note in asyncio.run(measure(path)):
            print(
                f"{what:<48} {seconds * 1000:>9.1f} ms  {note}" if seconds else f"{what:<48} {note}"
            )
        print(
            f"{'naive SQL: count(DISTINCT) per day, 90 days':<48} "
            f"{naive_sql(path) * 1000:>9.1f} ms  for comparison, not used"
        )


def index_mib(stats: Stats) -> float:
    """What the day index keeps: its bitmaps, their dicts, and the installation numbers."""
    index, size = stats.index, 0
    for day in index.days.values():
        size += sys.getsizeof(day.active)
        for by_value in day.values:
            size += sys.getsizeof(by_value) + sum(map(sys.getsizeof, by_value.values()))
    size += sys.getsizeof(index._ids) + sum(map(sys.getsizeof, index._ids))
    return size / 2**20


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


if __name__ == "__main__":
    main()
