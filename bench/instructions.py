"""Instructions per request under callgrind: the one figure this noisy machine repeats exactly.

wrk's req/s and even CPU µs per request move by ±25 % between runs of the same code here (other
tenants share the host's cores and caches). callgrind counts the instructions a process
executes, which for the same code and inputs repeats within ~0.5 %, so it is how an
optimisation worth a few per cent is told apart from noise (bench/README.md, "Instructions").

Each server runs under ``valgrind --tool=callgrind`` with counting switched off; a plain client
sends a warm-up of beacons, counting is switched on, a fixed number of beacons is sent (16
keep-alive connections), and for the router counting goes on until every backend's queue is
empty, so delivery is counted too. Counted: every thread of every process of the server.

The router serves with ``--delivery process`` by default: a supervisor, the ingest process that
answers the clients, and the delivery process. callgrind follows the forks (each process
writes its own ``callgrind.out.<pid>``), but ``callgrind_control`` cannot reach a forked
child (vgdb knows only the process valgrind started). So counting is switched on and off from
inside each process: a ``sitecustomize`` on the server's ``PYTHONPATH`` (bench only) maps
SIGUSR1 / SIGUSR2 to callgrind's START / STOP_INSTRUMENTATION client requests, compiled from
``<valgrind/callgrind.h>`` at the start of the run, and the bench signals each pid. Each part is
reported on its own: ``instructions_per_request`` is the ingest process alone (what
the clients wait on), ``delivery_per_request`` the delivery process, ``whole_per_request``
all of them. The ``*_inline`` variants serve with ``--delivery inline`` (one process, as
before: there the three figures are one).

    .venv/bin/python bench/instructions.py                 # bare, router, and its parts, ~4 min
    .venv/bin/python bench/instructions.py --only bare,router --requests 2000
    mkdir /tmp/main && git archive main | tar -x -C /tmp/main    # a same-run A/B against main:
    .venv/bin/python bench/instructions.py --only ingest_bare --requests 2000 --against /tmp/main

The ``batch`` variants send PostHog ``/batch/`` bodies of 100 events (scenario 2's, as
bench/lua/batch.lua makes them); for them ``--requests`` counts events and every figure is per
event (``--only batch,batch_bare --requests 10000``: 100 bodies).

Needs valgrind (Debian package; bench/setup installs it) and a C compiler. Writes
bench/results/instructions.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import configs
import suite
from procs import LOOPBACK, free_port, wait_port

VARIANTS = {
    "bare": "bare aiohttp + orjson (the baseline server)",
    "router": "router, scenario 1's config (pipeline, store + webhook)",
    "no_delivery": "router, pipeline, no backend delivering (webhook down, no store)",
    "ingest_only": "router, no pipeline, no backend delivering",
    "ingest_bare": "router, no pipeline, no backend at all: the request path and spool append",
    "capture_bare": "ingest_bare, but PostHog capture events (POST /capture/) instead of beacons",
    "batch": "router, scenario 2: scenario 1's config, PostHog /batch/ bodies of 100 events",
    "batch_bare": "ingest_bare, but PostHog /batch/ bodies of 100 events",
    "router_admin": "router, admin API on (listen: same), nobody tapping",
    "router_tap": "router, with `beacon-router tap` reading what the pipeline kept",
    "router_tap_store": "router, with a tap reading what the store backend is handed",
    "router_inline": "router, scenario 1's config, --delivery inline (one process)",
    "no_delivery_inline": "router, pipeline, no backend delivering, --delivery inline",
}
TAPS = {"router_tap": "", "router_tap_store": "archive"}  # variant → backend tapped ("": pipeline)
TAP_TOKEN = "bench-admin-token-0123456789abcdef"
BEACON = (
    '{"installation_id":"5eed%04x-0001-4a1e-9f3c-%012x","version":"2.4.1","platform":'
    '{"os":"linux","architecture":"amd64","os_version":"Debian 12","distribution":"docker"},'
    '"deployment_type":"docker-compose","timestamp":"2025-11-28T00:10:11Z","counts":{"users":%d,'
    '"projects":3,"goals":4,"spaces":1},"usage_metrics":{"active_users_7d":3,"logins_30d":9},'
    '"features_enabled":["sso","ai_summaries"],"telemetry":true}'
)
CAPTURE = (
    '{"api_key":"phc_bench","event":"installation_heartbeat","distinct_id":"5eed%04x-0001-4a1e-'
    '9f3c-%012x","properties":{"$lib":"posthog-python","version":"2.4.1","os":"linux",'
    '"deployment_type":"docker-compose","users":%d,"projects":3,"features_enabled":["sso"]},'
    '"timestamp":"2025-11-28T00:10:11Z"}'
)
# The events of bench/lua/batch.lua (scenario 2), in the same form: what posthog-python sends.
BATCH_EVENT = (
    '{"event":"installation_heartbeat","distinct_id":"%08x-%08x","uuid":"%08x-%04x-4%03x-8%03x-'
    '%012x","timestamp":"2025-11-28T00:%02d:%02dZ","properties":{"version":"2.4.%d","platform":'
    '"linux","deployment_type":"docker-compose","users":%d,"projects":%d,"goals":%d,"$lib":'
    '"posthog-python","$lib_version":"3.7.0"}}'
)
BATCH = 100  # events per /batch/ body
CONNECTIONS = 16
TOGGLE_C = r"""
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""
SITECUSTOMIZE = """
import ctypes, os, signal
_toggle = ctypes.CDLL(os.environ["BENCH_CALLGRIND_TOGGLE"])
signal.signal(signal.SIGUSR1, lambda *_: _toggle.start())
signal.signal(signal.SIGUSR2, lambda *_: _toggle.stop())
"""


def toggle_env(against: Path | None = None) -> dict[str, str]:
    """The server's environment additions that let the bench switch counting per process
    (and, with ``against``, import the router package of that checkout)."""
    where = suite.WORK / "callgrind-toggle"
    where.mkdir(parents=True, exist_ok=True)
    (where / "toggle.c").write_text(TOGGLE_C)
    (where / "sitecustomize.py").write_text(SITECUSTOMIZE)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(where / "toggle.so"),
                    str(where / "toggle.c")], check=True)
    path = os.pathsep.join(filter(None, [str(where), str(against) if against else None,
                                         os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "BENCH_CALLGRIND_TOGGLE": str(where / "toggle.so")}


def instrument(pids: list[int], on: bool) -> None:
    """Switch counting on or off in each process (its sitecustomize's handler); the handler
    runs between two bytecodes, so wait a moment for it in each."""
    for pid in pids:
        os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)
    time.sleep(2.0)


def router_doc(variant: str, data: Path, upstream_port: int) -> dict[str, Any]:
    variant = variant.removesuffix("_inline")  # the same config, another process model
    doc = configs.default(data, upstream_port, store=variant.startswith("router")
                          or variant == "batch")
    # no refused webhook's retries counted
    if variant in ("ingest_bare", "capture_bare", "batch_bare"):
        return {**doc, "pipeline": [], "backends": {}}
    if variant in TAPS or variant == "router_admin":  # the taps' same-config baseline
        doc["admin"] = {"token": TAP_TOKEN, "listen": "same"}
    if variant not in ("router", "batch"):
        doc["backends"]["hooks"]["url"] = f"http://{LOOPBACK}:1/down"  # refused: no delivery
    if variant == "ingest_only":
        doc["pipeline"] = []
    # Full batches whatever valgrind's pace (it slows the server ~50 times): as under load.
    for backend in doc["backends"].values():
        backend.setdefault("batch", {})["max_wait"] = "30s"
    return doc


def batch_body(n: int) -> bytes:
    """A /batch/ body of BATCH events, numbered from ``n`` (as bench/lua/batch.lua makes them)."""
    events = ",".join(
        BATCH_EVENT % (7, i, 7, i % 0x10000, i % 0x1000, 7, i, i % 60, i % 59, i % 9, i % 500,
                       i % 90, i % 300)
        for i in range(n * BATCH, (n + 1) * BATCH))
    return f'{{"api_key":"phc_bench","batch":[{events}]}}'.encode()


def is_batch(variant: str) -> bool:
    return variant in ("batch", "batch_bare")


def send(port: int, count: int, start: int, capture: bool = False, batch: bool = False) -> None:
    """``count`` beacons (PostHog capture events with ``capture``, /batch/ bodies of BATCH
    events each with ``batch``) over CONNECTIONS keep-alive connections, each answer awaited."""
    path, template, status = ((b"/capture/", CAPTURE, b"200") if capture
                              else (b"/batch/", "", b"200") if batch
                              else (b"/beacon", BEACON, b"202"))
    socks = [socket.create_connection((LOOPBACK, port)) for _ in range(CONNECTIONS)]
    try:
        n = start
        while n < start + count:
            busy = socks[:start + count - n]  # exactly ``count``: the last round may be short
            for sock in busy:
                body = (batch_body(n) if batch else
                        (template % (n % 0xFFFF, n, n % 500)).encode())
                sock.sendall(
                    b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
                )
                n += 1
            for sock in busy:
                answer = b""
                while not re.search(rb"\r\n\r\n.*\}", answer, re.S):
                    part = sock.recv(65536)
                    if not part:
                        raise RuntimeError("the server closed the connection")
                    answer += part
                if not answer.startswith(b"HTTP/1.1 " + status):
                    raise RuntimeError(f"unexpected answer: {answer[:120]!r}")
    finally:
        for sock in socks:
            sock.close()


def drained(port: int, timeout: float = 300.0) -> None:
    """Wait until every backend that is up has an empty queue (a down one never will)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=60) as r:
                backends = json.load(r)["backends"].values()
            # A backend whose state is unknown (null: delivery not up yet) is not drained.
            if not any(b["queued"] is None or (b["consecutive_failures"] == 0 and b["queued"])
                       for b in backends):
                return
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise RuntimeError("the router did not drain its queues")


class Tap:
    """A `beacon-router tap` reader: streams /admin/tap in a thread and counts its lines."""

    def __init__(self, port: int, backend: str) -> None:
        query = f"?backend={backend}" if backend else ""
        request = urllib.request.Request(f"http://{LOOPBACK}:{port}/admin/tap{query}",
                                         headers={"Authorization": f"Bearer {TAP_TOKEN}"})
        self.stream = urllib.request.urlopen(request, timeout=600)  # subscribed once answered
        self.lines = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self.stream:
                if line.strip():
                    self.lines += 1

    def expect(self, events: int, timeout: float = 300.0) -> None:
        """Fail unless the tap showed every counted event (it is then really being read)."""
        deadline = time.monotonic() + timeout
        while self.lines < events and time.monotonic() < deadline:
            time.sleep(1)
        print(f"  the tap read {self.lines} events", flush=True)
        if self.lines < events:
            raise RuntimeError(f"the tap showed {self.lines} of {events} events")


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the supervisor's children, under valgrind too)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.extend(family(int(child)))
    return found


def roles(port: int, pids: list[int], timeout: float = 300.0) -> dict[int, str]:
    """Each process's part: the supervisor (the first), delivery (as /readyz names it), ingest."""
    if len(pids) == 1:
        return {pids[0]: "ingest"}
    deadline = time.monotonic() + timeout
    delivery = None
    while delivery is None and time.monotonic() < deadline:
        url = f"http://{LOOPBACK}:{port}/readyz"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=60) as r:
            delivery = (json.load(r).get("delivery") or {}).get("pid")
        if delivery is None:
            time.sleep(1)
    named = {pid: "ingest" for pid in pids[1:]}
    named[pids[0]] = "supervisor"
    if delivery in named:
        named[delivery] = "delivery"
    return named


def count(variant: str, requests: int, up: suite.Upstream, against: Path | None = None
          ) -> dict[str, int]:
    """Instructions the server's processes executed for ``requests`` beacons (and their
    delivery), by part: ingest, delivery, supervisor (one "ingest" for a single process); with
    ``against``, the router package of that checkout (PYTHONPATH) rather than this one's."""
    work = suite.WORK / f"instructions-{variant}{'-against' if against else ''}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    if variant == "bare":
        server = [suite.PYTHON, str(suite.BENCH / "baseline_server.py"), "--port", str(port)]
    else:
        config = configs.write(router_doc(variant, work, up.port), work / "router.yaml")
        server = [suite.ROUTER_BIN, "serve", "--config", str(config),
                  "--listen", f"{LOOPBACK}:{port}", "--log-level", "warning"]
        if variant.endswith("_inline") or TAPS.get(variant):  # a backend's tap: inline only
            server += ["--delivery", "inline"]
    log_path = work / "valgrind.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={work}/callgrind.out.%p", *server],
            # str hashes are salted per process; fixed, dict and set probes repeat exactly
            env={**os.environ, **configs.router_env(up.port), "PYTHONHASHSEED": "0",
                 **toggle_env(against)},
            cwd=suite.REPO,
            stdout=subprocess.DEVNULL, stderr=log,
        )
    try:
        wait_port(port, timeout=300, proc=proc)
        capture, batch = variant == "capture_bare", is_batch(variant)
        if batch:  # --requests counts events: send that many in bodies of BATCH
            requests //= BATCH
        send(port, requests, 0, capture, batch)  # warm-up: imports, caches, the first batches
        if variant != "bare":
            drained(port)
        tap = Tap(port, TAPS[variant]) if variant in TAPS else None
        named = roles(port, family(proc.pid)) if variant != "bare" else {proc.pid: "ingest"}
        instrument(list(named), on=True)
        send(port, requests, requests, capture, batch)
        if variant != "bare":
            drained(port)
        instrument(list(named), on=False)
        if tap is not None:
            tap.expect(requests)
    finally:
        proc.terminate()
        proc.wait(timeout=300)
    totals = {int(pid): int(n) for pid, n in
              re.findall(r"==(\d+)== Collected : (\d+)", log_path.read_text())}
    if set(named) - set(totals):
        raise RuntimeError(f"no callgrind total for {sorted(set(named) - set(totals))} in "
                           f"{log_path}")
    parts: dict[str, int] = {}
    for pid, part in named.items():
        parts[part] = parts.get(part, 0) + totals[pid]
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    parser.add_argument("--requests", type=int, default=1000,
                        help="counted beacons per variant (events for batch variants, sent in "
                             f"bodies of {BATCH}); a multiple of the store's batch (1,000) and "
                             "the webhook's (100) keeps every batch full")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="also count another checkout's router (PYTHONPATH=DIR), each "
                             "variant right after this one's: a same-run A/B, e.g. against "
                             "`git archive main | tar -x -C DIR`; not written to the results")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("bench/instructions.py: valgrind is not installed; run bench/setup", file=sys.stderr)
        return 2
    up = suite.Upstream()
    results: dict[str, Any] = {}
    try:
        for variant in args.only.split(","):
            parts = count(variant, args.requests, up)
            per = {part: n / args.requests for part, n in parts.items()}
            results[variant] = {"what": VARIANTS[variant],
                                "instructions_per_request": round(per["ingest"])}
            if len(per) > 1:
                results[variant]["delivery_per_request"] = round(per.get("delivery", 0))
                results[variant]["supervisor_per_request"] = round(per.get("supervisor", 0))
                results[variant]["whole_per_request"] = round(sum(per.values()))
            shown = ", ".join(f"{part} {n / 1000:.1f}k" for part, n in per.items())
            print(f"{variant:18s} {per['ingest'] / 1000:8.1f} k instructions per request "
                  f"in the ingest process ({shown})", flush=True)
            if args.against is not None and variant != "bare":
                other = count(variant, args.requests, up, args.against.resolve())["ingest"]
                print(f"{'':18s} {other / args.requests / 1000:8.1f} k with {args.against} "
                      f"({(per['ingest'] * args.requests - other) / other:+.1%} here)",
                      flush=True)
    finally:
        up.proc.stop()
    out = suite.RESULTS / "instructions.json"
    merged = {**(json.loads(out.read_text()) if out.exists() else {}), **results}
    bare = merged.get("bare", {}).get("instructions_per_request")
    if bare:  # the bare server's count is the same from run to run: an earlier one will do
        for result in merged.values():
            if not result["instructions_per_request"]:
                continue
            result["x_bare"] = round(bare / result["instructions_per_request"], 3)
    out.write_text(json.dumps(merged, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
