"""Instructions per request under callgrind: the one figure this noisy machine repeats exactly.

wrk's req/s and even CPU µs per request move by ±25 % between runs of the same code here (other
tenants share the host's cores and caches). callgrind counts the instructions a process
executes, which for the same code and inputs repeats within ~0.5 %, so it is how an
optimisation worth a few per cent is told apart from noise (bench/README.md, "Instructions").

Each server runs under ``valgrind --tool=callgrind`` with counting switched off; a plain client
sends a warm-up of beacons, counting is switched on, a fixed number of beacons is sent (16
keep-alive connections), and for the router counting goes on until every backend's queue is
empty, so delivery is counted too. Counted: every thread of the server process.

    .venv/bin/python bench/instructions.py                 # bare, router, and its parts, ~4 min
    .venv/bin/python bench/instructions.py --only bare,router --requests 2000
    mkdir /tmp/main && git archive main | tar -x -C /tmp/main    # a same-run A/B against main:
    .venv/bin/python bench/instructions.py --only ingest_bare --requests 2000 --against /tmp/main

Needs valgrind (Debian package; bench/setup installs it). Writes bench/results/instructions.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
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
    "router_admin": "router, admin API on (listen: same), nobody tapping",
    "router_tap": "router, with `beacon-router tap` reading what the pipeline kept",
    "router_tap_store": "router, with a tap reading what the store backend is handed",
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
CONNECTIONS = 16


def router_doc(variant: str, data: Path, upstream_port: int) -> dict[str, Any]:
    doc = configs.default(data, upstream_port, store=variant.startswith("router"))
    if variant in ("ingest_bare", "capture_bare"):  # no refused webhook's retries counted
        return {**doc, "pipeline": [], "backends": {}}
    if variant in TAPS or variant == "router_admin":  # the taps' same-config baseline
        doc["admin"] = {"token": TAP_TOKEN, "listen": "same"}
    if variant != "router":
        doc["backends"]["hooks"]["url"] = f"http://{LOOPBACK}:1/down"  # refused: no delivery
    if variant == "ingest_only":
        doc["pipeline"] = []
    # Full batches whatever valgrind's pace (it slows the server ~50 times): as under load.
    for backend in doc["backends"].values():
        backend.setdefault("batch", {})["max_wait"] = "30s"
    return doc


def send(port: int, count: int, start: int, capture: bool = False) -> None:
    """``count`` beacons (PostHog capture events with ``capture``) over CONNECTIONS keep-alive
    connections, each answer awaited."""
    path, template, status = ((b"/capture/", CAPTURE, b"200") if capture
                              else (b"/beacon", BEACON, b"202"))
    socks = [socket.create_connection((LOOPBACK, port)) for _ in range(CONNECTIONS)]
    try:
        n = start
        while n < start + count:
            for sock in socks:
                body = (template % (n % 0xFFFF, n, n % 500)).encode()
                sock.sendall(
                    b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
                )
                n += 1
            for sock in socks:
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
            if not any(b["queued"] for b in backends if b["consecutive_failures"] == 0):
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


def count(variant: str, requests: int, up: suite.Upstream, against: Path | None = None) -> int:
    """Instructions the server executed for ``requests`` beacons (and their delivery); with
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
    log_path = work / "valgrind.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={work}/callgrind.out.%p", *server],
            # str hashes are salted per process; fixed, dict and set probes repeat exactly
            env={**os.environ, **configs.router_env(up.port), "PYTHONHASHSEED": "0",
                 **({"PYTHONPATH": str(against)} if against else {})},
            cwd=suite.REPO,
            stdout=subprocess.DEVNULL, stderr=log,
        )
    try:
        wait_port(port, timeout=300, proc=proc)
        capture = variant == "capture_bare"
        send(port, requests, 0, capture)  # warm-up: imports, caches, the first batches
        if variant != "bare":
            drained(port)
        tap = Tap(port, TAPS[variant]) if variant in TAPS else None
        control = ["callgrind_control", "--instr=on", str(proc.pid)]
        subprocess.run(control, check=True, capture_output=True)
        send(port, requests, requests, capture)
        if variant != "bare":
            drained(port)
        control[1] = "--instr=off"
        subprocess.run(control, check=True, capture_output=True)
        if tap is not None:
            tap.expect(requests)
    finally:
        proc.terminate()
        proc.wait(timeout=300)
    found = re.search(r"Collected : (\d+)", log_path.read_text())
    if found is None:
        raise RuntimeError(f"no callgrind total in {log_path}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    parser.add_argument("--requests", type=int, default=1000,
                        help="counted beacons per variant; a multiple of the store's batch "
                             "(1,000) and the webhook's (100) keeps every batch full")
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
            total = count(variant, args.requests, up)
            results[variant] = {"what": VARIANTS[variant],
                                "instructions_per_request": round(total / args.requests)}
            print(f"{variant:12s} {total / args.requests / 1000:8.1f} k instructions per request",
                  flush=True)
            if args.against is not None and variant != "bare":
                other = count(variant, args.requests, up, args.against.resolve())
                print(f"{'':12s} {other / args.requests / 1000:8.1f} k with {args.against} "
                      f"({(total - other) / other:+.1%} here)", flush=True)
    finally:
        up.proc.stop()
    out = suite.RESULTS / "instructions.json"
    merged = {**(json.loads(out.read_text()) if out.exists() else {}), **results}
    bare = merged.get("bare", {}).get("instructions_per_request")
    if bare:  # the bare server's count is the same from run to run: an earlier one will do
        for result in merged.values():
            result["x_bare"] = round(bare / result["instructions_per_request"], 3)
    out.write_text(json.dumps(merged, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
