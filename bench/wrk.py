"""Run wrk with one of bench/lua's scripts and read the JSON line its ``done`` prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"
_MARK = "BENCH_JSON "


@dataclass
class Load:
    """One wrk run's outcome; rates are per second of the measured duration."""

    requests: int
    acked: int
    rejected: int
    errors: dict[str, int]
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    events_per_request: int = 1

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.requests * self.events_per_request / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "acked": self.acked,
            "rejected": self.rejected,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "events_per_s": round(self.events_per_s, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "events_per_request": self.events_per_request,
        }


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    script: str,
    *,
    connections: int = 64,
    seconds: float = 8.0,
    threads: int = 1,
    events_per_request: int = 1,
    timeout_s: int = 10,
) -> Load:
    """Load ``url`` for ``seconds`` from ``connections`` keep-alive connections."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        f"{script}.lua",
        url,
    ]
    # wrk is bounded by -d; the extra minute only guards against a wedged process.
    out = subprocess.run(
        argv, cwd=LUA_DIR, capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    for line in out.stdout.splitlines():
        if line.startswith(_MARK):
            raw = json.loads(line[len(_MARK) :])
            break
    else:
        raise RuntimeError(
            f"wrk printed no result (exit {out.returncode}): "
            f"{out.stderr.strip() or out.stdout.strip()}"
        )
    lat = raw["latency_us"]
    # static.lua has no response() callback (it would slow wrk down): there wrk itself counts
    # the non-2xx/3xx answers, as status errors.
    acked = raw["requests"] - raw["errors"]["status"] if script == "static" else raw["acked"]
    return Load(
        requests=raw["requests"],
        acked=acked,
        rejected=raw["rejected"],
        errors=raw["errors"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        events_per_request=events_per_request,
    )
