"""The bench suite: every scenario of bench/README.md in one run, with its baselines and peer.

Run through ``bench/run`` (which picks the venv's Python). Writes ``bench/results/<name>.json``
per scenario, ``bench/results/summary.json`` and ``bench/results/results.md``; the work files
(spools, stores, logs, nginx prefixes) go to ``bench/results/tmp/`` and are kept for a look.
Everything listens on 127.0.0.1 and every load is bounded in time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import configs
import nginx
import report
import wrk
from procs import LOOPBACK, Proc, RssSampler, free_port, tree_cpu, tree_pss, tree_rss, wait_port

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WORK = RESULTS / "tmp"
PYTHON = sys.executable
ROUTER_BIN = str(Path(PYTHON).parent / "beacon-router")
MB = 1024 * 1024

SCENARIOS = ("ceiling", "baseline", "router", "peer", "drain", "pipeline", "workers")


@dataclass
class Settings:
    """How long and how hard: the defaults fit the whole suite in under 10 minutes."""

    seconds: float = 6.0  # per measured run
    runs: int = 3
    connections: int = 64
    batch_connections: int = 16  # 100 events per request: fewer connections suffice
    outage_seconds: float = 30.0  # the run; the upstream is down for its middle third
    drain_events: int = 1_000_000
    down_seconds: float = 15.0  # scenario 4: ingest with every backend down
    drain_timeout: float = 300.0


@dataclass
class Suite:
    settings: Settings
    only: set[str]
    results: dict[str, Any] = field(default_factory=dict)
    upstream: Upstream | None = None

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def save(self, name: str, result: dict[str, Any]) -> None:
        self.results[name] = result
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")

    # -- load ----------------------------------------------------------------------------------

    def series(
        self,
        url: str,
        script: str,
        pid: int,
        *,
        events_per_request: int = 1,
        connections: int | None = None,
        runs: int | None = None,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """``runs`` wrk runs against ``url`` with the RSS of ``pid``'s tree sampled throughout."""
        s = self.settings
        loads, cpu = [], []
        with RssSampler(pid) as rss:
            for _ in range(runs or s.runs):
                before = tree_cpu(pid)
                loads.append(
                    wrk.run(
                        url,
                        script,
                        seconds=seconds or s.seconds,
                        connections=connections or s.connections,
                        events_per_request=events_per_request,
                    )
                )
                cpu.append(tree_cpu(pid) - before)
        return summarize(loads, rss, cpu)

    def paired(
        self,
        bare_url: str,
        url: str,
        script: str,
        *,
        settle: Callable[[], object],
        events_per_request: int = 1,
        connections: int | None = None,
    ) -> dict[str, Any]:
        """The bare server and the router in turn, ``runs`` pairs of runs back to back, the
        router's backlog delivered (``settle``) before the bare server's next run. This host's
        speed drifts by tens of per cent within minutes, and the two scenarios' medians come
        from runs minutes apart; a pair sees the same host, so the median of the pairs' ratios
        is the "x bare" to judge by."""
        s = self.settings
        pairs = []
        for _ in range(s.runs):
            kw = {"seconds": s.seconds, "connections": connections or s.connections,
                  "events_per_request": events_per_request}
            bare = wrk.run(bare_url, script, **kw)  # type: ignore[arg-type]
            routed = wrk.run(url, script, **kw)  # type: ignore[arg-type]
            settle()
            pairs.append({
                "bare_events_per_s": round(bare.events_per_s, 1),
                "router_events_per_s": round(routed.events_per_s, 1),
                "ratio": round(routed.events_per_s / max(bare.events_per_s, 1e-9), 3),
                "router_p99_ms": routed.p99_ms,
            })
        ratios = [p["ratio"] for p in pairs]
        p99s = [p["router_p99_ms"] for p in pairs]
        return {
            "pairs": pairs,
            "ratio": {"median": statistics.median(ratios), "min": min(ratios),
                      "max": max(ratios)},
            "router_p99_ms": {"median": statistics.median(p99s), "min": min(p99s),
                              "max": max(p99s)},
        }


# -- the PostHog/webhook stand-in ---------------------------------------------------------------


class Upstream:
    """bench/upstream.py in its own process, and its control port."""

    def __init__(self) -> None:
        self.port, self.control_port = free_port(), free_port()
        self.proc = Proc(
            "upstream",
            [
                PYTHON,
                str(BENCH / "upstream.py"),
                "--port",
                str(self.port),
                "--control-port",
                str(self.control_port),
            ],
            WORK,
        )
        wait_port(self.control_port, proc=self.proc.popen)

    def call(self, method: str, path: str) -> dict[str, Any]:
        url = f"http://{LOOPBACK}:{self.control_port}{path}"
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return dict(json.load(r))

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/stats")

    def path(self, path: str) -> dict[str, int]:
        return dict(self.stats()["paths"].get(path, {"requests": 0, "events": 0, "unique": 0}))

    def reset(self, delay_ms: float = 0) -> None:
        self.call("POST", "/reset")
        self.call("POST", f"/delay?ms={delay_ms}")
        self.call("POST", "/up")


# -- the router ----------------------------------------------------------------------------------


class Router:
    """``beacon-router serve`` on a generated config, in its own process."""

    def __init__(
        self,
        name: str,
        doc: dict[str, Any],
        upstream: Upstream,
        *,
        workers: int = 1,
        fresh: bool = True,
    ) -> None:
        self.name = name
        self.data = WORK / name
        if fresh and self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = configs.write(doc, self.data / "router.yaml")
        self.port = free_port()
        argv = [
            ROUTER_BIN,
            "serve",
            "--config",
            str(self.config),
            "--listen",
            f"{LOOPBACK}:{self.port}",
            "--log-level",
            "warning",
        ]
        if workers > 1:
            argv += ["--workers", str(workers)]
        self.proc = Proc(
            f"router-{name}", argv, WORK, env=configs.router_env(upstream.port), cwd=REPO
        )
        try:
            wait_port(self.port, timeout=30, proc=self.proc.popen)
            self.wait_ready()
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.proc.tail()}") from exc

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def readyz(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=10) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as exc:  # 503 still carries the JSON body
            return dict(json.load(exc))

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.readyz().get("status") == "ready":
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"router {self.name} not ready after {timeout}s")

    def queued(self) -> dict[str, int | None]:
        """Each enabled backend's queue; None while the delivery process cannot tell."""
        return {name: b["queued"] for name, b in self.readyz()["backends"].items()}

    def wait_drained(self, timeout: float) -> float | None:
        """Seconds until every backend's queue is empty; None if not within ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if all(q == 0 for q in self.queued().values()):
                return time.monotonic() - started
            time.sleep(0.25)
        return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.stop()


@contextmanager
def router(name: str, doc: dict[str, Any], upstream: Upstream, **kw: Any) -> Iterator[Router]:
    r = Router(name, doc, upstream, **kw)
    try:
        yield r
    finally:
        r.stop()


@contextmanager
def process(proc: Proc, port: int) -> Iterator[Proc]:
    try:
        wait_port(port, proc=proc.popen)
        yield proc
    finally:
        proc.stop()


# -- scenarios ---------------------------------------------------------------------------------


def scenario_ceiling(suite: Suite) -> None:
    """nginx ``return 204``: the machine's HTTP ceiling with this load generator."""
    if not nginx.available():
        suite.save("ceiling", {"skipped": "nginx is not installed (run bench/setup)"})
        return
    port = free_port()
    with process(nginx.start("ceiling", port, WORK), port) as proc:
        result = suite.series(
            f"http://{LOOPBACK}:{port}/beacon",
            "static",
            proc.pid,
            seconds=min(5.0, suite.settings.seconds),
        )
    suite.save("ceiling", {"what": "nginx return 204 (static beacon body)", **result})


def scenario_baseline(suite: Suite) -> None:
    """The bare aiohttp + orjson server: single beacons and 100-event batches."""
    port = free_port()
    proc = Proc("baseline", [PYTHON, str(BENCH / "baseline_server.py"), "--port", str(port)], WORK)
    with process(proc, port):
        single = suite.series(f"http://{LOOPBACK}:{port}/beacon", "beacon", proc.pid)
        batch = suite.series(
            f"http://{LOOPBACK}:{port}/batch/",
            "batch",
            proc.pid,
            events_per_request=100,
            connections=suite.settings.batch_connections,
        )
    suite.save(
        "baseline",
        {"what": "bare aiohttp + orjson, parse and 202", "single": single, "batch": batch},
    )


def scenario_router(suite: Suite) -> None:
    """Scenarios 1 and 2 (store + webhook), then the router's side of the peer comparison
    (store + posthog): fast upstream, +50 ms, a 10 s outage."""
    up = suite.upstream
    assert up is not None
    s = suite.settings
    out: dict[str, Any] = {
        "config": "config/router.yaml (SQLite spool, store) + a webhook backend",
        "posthog_config": "config/router.yaml with POSTHOG_API_KEY set (store + posthog)",
    }
    bare_port = free_port()
    bare = Proc("baseline-paired", [PYTHON, str(BENCH / "baseline_server.py"), "--port",
                                    str(bare_port)], WORK)
    with process(bare, bare_port), \
            router("default", configs.default(WORK / "default", up.port), up) as r:
        up.reset()
        out["single"] = suite.series(r.url("/beacon"), "beacon", r.pid)
        out["single"]["settle_s"] = r.wait_drained(60)
        out["single"]["upstream"] = upstream_ratios(up)
        bare_url = f"http://{LOOPBACK}:{bare_port}"
        out["single_paired"] = suite.paired(f"{bare_url}/beacon", r.url("/beacon"), "beacon",
                                            settle=lambda: r.wait_drained(60))
        out["batch_paired"] = suite.paired(
            f"{bare_url}/batch/", r.url("/batch/"), "batch", settle=lambda: r.wait_drained(120),
            events_per_request=100, connections=s.batch_connections,
        )
        # Batches last: their backlog is left undelivered when the router stops; the drain
        # scenario measures the delivery of such a backlog on its own.
        up.reset()
        out["batch"] = suite.series(
            r.url("/batch/"),
            "batch",
            r.pid,
            events_per_request=100,
            connections=s.batch_connections,
        )
    peer: dict[str, Any] = {}
    with router("posthog", configs.with_posthog(WORK / "posthog"), up) as r:
        up.reset()
        peer["fast"] = suite.series(r.url("/beacon"), "beacon", r.pid)
        peer["fast"]["settle_s"] = r.wait_drained(60)
        peer["fast"]["upstream"] = upstream_ratios(up)
        up.reset(delay_ms=50)
        peer["slow_upstream"] = suite.series(r.url("/beacon"), "beacon", r.pid)
        peer["slow_upstream"]["settle_s"] = r.wait_drained(60)
        peer["slow_upstream"]["upstream"] = upstream_ratios(up)
        peer["outage"] = outage_run(
            suite, r.url("/beacon"), r.pid, "/batch/", settle=lambda: r.wait_drained(120)
        )
    out["posthog"] = peer
    up.reset()
    suite.save("router", out)


def scenario_peer(suite: Suite) -> None:
    """The nginx + Lua peer forwarding each beacon to the stand-in: fast, 50 ms, outage."""
    up = suite.upstream
    assert up is not None
    if not nginx.available(lua=True):
        suite.save("peer", {"skipped": "nginx-extras is not installed (run bench/setup)"})
        return
    port = free_port()
    out: dict[str, Any] = {
        "what": "nginx + Lua (content_by_lua, lua-cjson), one synchronous "
        "PostHog /capture/ per beacon, 200 whatever happens"
    }
    with process(nginx.start("peer", port, WORK, upstream_port=up.port), port) as proc:
        url = f"http://{LOOPBACK}:{port}/beacon"
        up.reset()
        out["fast"] = suite.series(url, "beacon", proc.pid)
        out["fast"]["upstream"] = upstream_ratios(up)
        up.reset(delay_ms=50)
        out["slow_upstream"] = suite.series(url, "beacon", proc.pid)
        out["outage"] = outage_run(suite, url, proc.pid, "/capture/", settle=lambda: 0.0)
    up.reset()
    suite.save("peer", out)


def outage_run(
    suite: Suite, url: str, pid: int, path: str, settle: Callable[[], float | None]
) -> dict[str, Any]:
    """One run with the upstream down for its middle third: acknowledged vs received."""
    up = suite.upstream
    assert up is not None
    run_s = suite.settings.outage_seconds
    up.reset()
    up.call("POST", f"/outage?after={run_s / 3}&seconds={run_s / 3}")
    with RssSampler(pid) as rss:
        load = wrk.run(url, "beacon", seconds=run_s, connections=suite.settings.connections)
    settled = settle()
    time.sleep(1.0)  # the last responses' events reach the stand-in's counters
    got = up.path(path)
    # Events carry uuids through the router (retries may resend: count distinct ones); the
    # peer's do not, and it never resends.
    received = got["unique"] or got["events"]
    lost = max(0, load.acked - received)
    return {
        "seconds": run_s,
        "down_seconds": run_s / 3,
        "acknowledged": load.acked,
        "received": received,
        "received_with_duplicates": got["events"],
        "lost": lost,
        "lost_pct": round(100 * lost / load.acked, 2) if load.acked else None,
        "settle_s": settled,
        "load": load.as_dict(),
        "peak_rss_mb": round(rss.peak / MB, 1),
        "peak_pss_mb": round(rss.peak_pss / MB, 1),
    }


def upstream_ratios(up: Upstream) -> dict[str, Any]:
    """Events per upstream request, per path, since the last reset."""
    out: dict[str, Any] = {}
    for path, c in up.stats()["paths"].items():
        out[path] = {
            **c,
            "events_per_request": round(c["events"] / c["requests"], 1) if c["requests"] else None,
        }
    return out


def scenario_drain(suite: Suite) -> None:
    """Scenarios 3 and 4: N events queued with every backend down, ingest on top, then drain."""
    up = suite.upstream
    assert up is not None
    s = suite.settings
    name = "drain"
    data = WORK / name
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    full = configs.default(data, up.port)
    configs.write(full, data / "prefill.yaml")
    suite.log(f"drain: queueing {s.drain_events} events in the spool")
    started = time.monotonic()
    fill = subprocess.run(
        [
            PYTHON,
            str(BENCH / "prefill.py"),
            "--config",
            str(data / "prefill.yaml"),
            "--events",
            str(s.drain_events),
            "--backends",
            ",".join(full["backends"]),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **configs.router_env(up.port)},
        timeout=600,
    )
    prefill = json.loads(fill.stdout.strip().splitlines()[-1])
    prefill["wall_s"] = round(time.monotonic() - started, 1)
    out: dict[str, Any] = {"events_queued": s.drain_events, "prefill": prefill}

    # Scenario 4: the HTTP backends are down for the whole run (the store is left out: a local
    # file does not go down), with the whole backlog queued. Ingest and RSS must stay flat.
    up.call("POST", "/down")
    down_cfg = configs.default(data, up.port, store=False)
    with router(name, down_cfg, up, fresh=False) as r:
        out["down"] = down_run(suite, r, tree_rss(r.pid), tree_pss(r.pid))
    ingested = out["down"]["load"]["acked"]
    total = s.drain_events + ingested
    spool = sum(p.stat().st_size for p in data.glob("spool.db*"))
    out["spool_bytes"] = spool
    out["spool_bytes_per_event"] = round(spool / total, 1)

    # Scenario 3: everything comes back; time until every backend has every event.
    up.reset()
    suite.log(f"drain: delivering {total} events to {', '.join(full['backends'])}")
    with router(name, full, up, fresh=False) as r:
        out["drain"] = drain_run(r, up, total, s.drain_timeout)
    suite.save("drain", out)


def down_run(suite: Suite, r: Router, rss_at_start: int, pss_at_start: int) -> dict[str, Any]:
    """Single-beacon load with the backends down; ingest rate and RSS sampled each second."""
    samples: list[dict[str, float]] = []
    stop = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not stop.wait(1.0):
            # Every configured backend is down: any one's queue counts the intake. A second
            # in which the delivery process cannot tell (None) is left out.
            queued = [q for q in r.queued().values() if q is not None]
            if not queued:
                continue
            samples.append(
                {
                    "t": round(time.monotonic() - started, 2),
                    "queued": max(queued),
                    "rss_mb": round(tree_rss(r.pid) / MB, 1),
                    "pss_mb": round(tree_pss(r.pid) / MB, 1),
                }
            )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        load = wrk.run(
            r.url("/beacon"),
            "beacon",
            seconds=suite.settings.down_seconds,
            connections=suite.settings.connections,
        )
    finally:
        stop.set()
        sampler.join()
    rates = [
        (b["queued"] - a["queued"]) / (b["t"] - a["t"]) for a, b in itertools.pairwise(samples)
    ]
    third = max(1, len(rates) // 3)
    first, last = rates[:third], rates[-third:]
    rss = [x["rss_mb"] for x in samples]
    pss = [x["pss_mb"] for x in samples]
    return {
        "load": load.as_dict(),
        "rss_at_start_mb": round(rss_at_start / MB, 1),
        "peak_rss_mb": max(rss, default=0.0),
        "rss_first_mb": rss[0] if rss else None,
        "rss_last_mb": rss[-1] if rss else None,
        "pss_at_start_mb": round(pss_at_start / MB, 1),
        "peak_pss_mb": max(pss, default=0.0),
        "pss_first_mb": pss[0] if pss else None,
        "pss_last_mb": pss[-1] if pss else None,
        "ingest_first_third_per_s": round(statistics.mean(first)) if rates else None,
        "ingest_last_third_per_s": round(statistics.mean(last)) if rates else None,
        "samples": samples,
    }


def drain_run(r: Router, up: Upstream, total: int, timeout: float) -> dict[str, Any]:
    """Poll each backend's queue until empty; record when each one got there."""
    started = time.monotonic()
    cpu_before = tree_cpu(r.pid)
    done: dict[str, float] = {}
    with RssSampler(r.pid, interval=0.5) as rss:
        while time.monotonic() - started < timeout:
            for name, queued in r.queued().items():
                if queued == 0 and name not in done:
                    done[name] = round(time.monotonic() - started, 2)
            if len(done) == len(r.queued()):
                break
            time.sleep(0.25)
    cpu = tree_cpu(r.pid) - cpu_before
    ratios = upstream_ratios(up)
    per_backend = {
        name: {"seconds": secs, "events_per_s": round(total / secs) if secs else None}
        for name, secs in done.items()
    }
    slowest = max(done.values()) if len(done) == len(r.queued()) else None
    return {
        "events": total,
        "seconds": slowest,
        "events_per_s": round(total / slowest) if slowest else None,
        "backends": per_backend,
        "upstream": ratios,
        "peak_rss_mb": round(rss.peak / MB, 1),
        "peak_pss_mb": round(rss.peak_pss / MB, 1),
        "cpu_us_per_event": round(cpu / total * 1e6, 1),
        "timed_out": slowest is None,
    }


def scenario_pipeline(suite: Suite) -> None:
    """Scenario 6: the full privacy pipeline vs none (webhook backend only), and per filter."""
    up = suite.upstream
    assert up is not None
    out: dict[str, Any] = {}
    for label, steps in (("none", []), ("privacy", configs.privacy_steps())):
        up.reset()
        doc = configs.pipeline_only(WORK / f"pipeline-{label}", up.port, steps)
        with router(f"pipeline-{label}", doc, up) as r:
            out[label] = suite.series(r.url("/beacon"), "beacon", r.pid)
            r.wait_drained(60)
    cost = subprocess.run(
        [PYTHON, str(BENCH / "filter_cost.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, **configs.router_env(up.port)},
    )
    out["per_filter"] = json.loads(cost.stdout)
    suite.save("pipeline", out)


def workers_available() -> bool:
    help_text = subprocess.run(
        [ROUTER_BIN, "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--workers" in help_text


def scenario_workers(suite: Suite) -> None:
    """Scenario 5: ``--workers 2`` vs 1 on the default config, single beacons."""
    up = suite.upstream
    assert up is not None
    if not workers_available():
        suite.save(
            "workers", {"skipped": "not yet available: beacon-router serve has no --workers option"}
        )
        return
    out: dict[str, Any] = {}
    for n in (1, 2):
        up.reset()
        with router(
            f"workers-{n}", configs.default(WORK / f"workers-{n}", up.port), up, workers=n
        ) as r:
            out[str(n)] = suite.series(r.url("/beacon"), "beacon", r.pid)
            time.sleep(2.0)  # let delivery catch up before the next router starts
    suite.save("workers", out)


# -- summary -----------------------------------------------------------------------------------


def summarize(loads: list[wrk.Load], memory: RssSampler, cpu: list[float]) -> dict[str, Any]:
    """Median and min-max over the runs of each figure."""

    def stat(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }

    return {
        "runs": [x.as_dict() for x in loads],
        "rps": stat([x.rps for x in loads]),
        "events_per_s": stat([x.events_per_s for x in loads]),
        "p50_ms": stat([x.p50_ms for x in loads]),
        "p99_ms": stat([x.p99_ms for x in loads]),
        "errors": sum(sum(x.errors.values()) for x in loads),
        "rejected": sum(x.rejected for x in loads),
        "peak_rss_mb": round(memory.peak / MB, 1),
        "peak_pss_mb": round(memory.peak_pss / MB, 1),
        # The server's own CPU time (all threads and processes, delivery included) per event:
        # unlike req/s, other load on the machine does not change it much.
        "cpu_us_per_event": stat(
            [
                c / max(1, x.requests * x.events_per_request) * 1e6
                for c, x in zip(cpu, loads, strict=True)
            ]
        ),
        "cpu_cores": stat([c / x.seconds for c, x in zip(cpu, loads, strict=True)]),
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the beacon-router bench suite.")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default all: {', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 run of 2 s each, 50k events drained"
    )
    parser.add_argument("--seconds", type=float, help="seconds per measured run")
    parser.add_argument("--runs", type=int, help="runs per measurement")
    parser.add_argument("--drain-events", type=int, help="events queued for the drain")
    args = parser.parse_args()
    settings = Settings()
    if args.quick:
        settings = Settings(
            seconds=2,
            runs=1,
            outage_seconds=9,
            drain_events=50_000,
            down_seconds=5,
            drain_timeout=60,
        )
    if args.seconds:
        settings.seconds = args.seconds
    if args.runs:
        settings.runs = args.runs
    if args.drain_events:
        settings.drain_events = args.drain_events
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if not wrk.available():
        print("bench: wrk is not installed; run bench/setup", file=sys.stderr)
        return 2

    RESULTS.mkdir(exist_ok=True)
    WORK.mkdir(exist_ok=True)
    suite = Suite(settings, only)
    started = time.monotonic()
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_start": loadavg(),
        "cpus": os.cpu_count(),
        "settings": settings.__dict__,
        "scenarios": sorted(only, key=SCENARIOS.index),
    }
    suite.log(f"bench: {', '.join(meta['scenarios'])}; load average {meta['loadavg_start']}")
    suite.upstream = Upstream()
    failed = []
    try:
        for name in SCENARIOS:
            if name not in only:
                continue
            suite.log(f"scenario {name}")
            try:
                globals()[f"scenario_{name}"](suite)
            except Exception as exc:  # one broken scenario must not lose the others' results
                suite.log(f"scenario {name} FAILED: {exc}")
                suite.save(name, {"failed": str(exc)})
                failed.append(name)
    finally:
        suite.upstream.proc.stop()
    meta.update(loadavg_end=loadavg(), wall_s=round(time.monotonic() - started, 1))
    # Scenarios not run this time keep their previous results in the summary.
    for name in SCENARIOS:
        path = RESULTS / f"{name}.json"
        if name not in suite.results and path.exists():
            suite.results[name] = json.loads(path.read_text())
    summary = report.build(suite.results, meta)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "results.md").write_text(report.markdown(summary))
    suite.log(f"done in {meta['wall_s']} s; load average {meta['loadavg_end']}")
    print(report.markdown(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
