"""`beacon-router reload --pid PID` (systemd's ExecReload=) against real `beacon-router serve`
processes, one and `--workers 2`: exit 0 once a change is applied, 1 naming the key when the
file is refused, and a clear error — never a hang — when no verdict can come."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
from support import REPO, RouterProcess, free_port

from router.serve import reload_verdict

CONFIG = """
server: {drain_delay: 0s, shutdown_timeout: 2s}
spool: {path: ./data/spool.db}
backends:
  out: {type: stdout}
"""
CHANGED = CONFIG + "  more: {type: stdout}\n"
BROKEN = CONFIG + "  bad: {type: nope}\n"


def reload(pid: int, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", "reload", "--pid", str(pid), *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": REPO, "NOTIFY_SOCKET": ""},
    )


async def run_reload(pid: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a thread: the event loop stays free while it waits."""
    return await asyncio.to_thread(reload, pid, *args)


@pytest.mark.parametrize("workers", [None, 2], ids=["one-process", "two-workers"])
async def test_reload_waits_for_the_verdict_applied_or_refused(tmp_path, workers):
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG)
    router = RouterProcess(str(config), free_port(), str(tmp_path),
                           args=("--log-format", "json",
                                 *(("--workers", str(workers)) if workers else ())),
                           env={"NOTIFY_SOCKET": ""})  # not under systemd: no relay needed
    router.start()
    try:
        await router.wait_ready()
        assert router.proc is not None
        pid = router.proc.pid

        config.write_text(CHANGED)
        done = await run_reload(pid)
        assert done.returncode == 0, done.stderr
        assert "config reload applied" in done.stdout
        # applied means applied: the new backend is already running when the command returns
        assert '"added": ["more"]' in router.logs()

        config.write_text(BROKEN)
        done = await run_reload(pid, "--output", "json")
        assert done.returncode == 1, done.stderr
        verdict = orjson.loads(done.stdout)
        assert verdict["ok"] is False and "refused" in verdict["status"]
        assert any("backends.bad" in e for e in verdict["errors"]), verdict
        if workers:  # every worker read the same file: one error, said once
            assert len([e for e in verdict["errors"] if "backends.bad" in e]) == 1, verdict

        done = await run_reload(pid)  # the text form names the key too
        assert done.returncode == 1 and "backends.bad" in done.stdout, done.stdout

        config.write_text(CONFIG)
        assert (await run_reload(pid)).returncode == 0  # and it recovers
        assert router.terminate() == 0
    finally:
        router.stop()


STAND_IN = """
import os, signal, sys, time
from router.serve import reload_verdict
mode = sys.argv[1]
def on_hup(signo, frame):
    started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    if mode == "exit":
        os._exit(0)
    if mode == "late":  # an earlier reload's verdict first: not the waiter's
        reload_verdict.send(started - 10**12, True, "config reload applied", [])
        time.sleep(0.3)
        reload_verdict.send(started, False, "config reload refused", ["x.yaml:3: backends.b"])
signal.signal(signal.SIGHUP, on_hup if mode != "ignore" else signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def stand_in(tmp_path, mode: str) -> subprocess.Popen[str]:
    """A process whose command line reads like `… router … serve` and answers SIGHUP badly."""
    script = tmp_path / "router_stand_in.py"
    script.write_text(textwrap.dedent(STAND_IN))
    proc = subprocess.Popen([sys.executable, str(script), mode, "serve"], text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_router_that_exits_instead_of_answering_is_an_error_not_a_hang(tmp_path):
    proc = stand_in(tmp_path, "exit")
    try:
        done = reload(proc.pid)
    finally:
        proc.wait(10)
    assert done.returncode == 1
    assert f"pid {proc.pid} exited before its reload's verdict" in done.stderr


def test_no_verdict_in_time_is_an_error_that_says_so(tmp_path):
    proc = stand_in(tmp_path, "ignore")
    try:
        done = reload(proc.pid, "--timeout", "1")
    finally:
        proc.kill()
        proc.wait(10)
    assert done.returncode == 1 and "no verdict" in done.stderr and "within 1 s" in done.stderr


def test_only_the_routers_own_verdict_of_this_reload_counts(tmp_path):
    """An earlier reload's verdict is skipped; a datagram from another process is ignored."""
    proc = stand_in(tmp_path, "late")
    forger = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        waiter = subprocess.Popen(
            [sys.executable, "-m", "router", "reload", "--pid", str(proc.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": REPO})
        forged = orjson.dumps({"started": 2**62, "ok": True, "status": "forged", "errors": [],
                               "restart_required": []})
        deadline = time.monotonic() + 10
        while waiter.poll() is None and time.monotonic() < deadline:
            # this test's process is not the router: the waiter must not believe it
            with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
                forger.sendto(forged, reload_verdict.ADDRESS.format(pid=proc.pid))
            time.sleep(0.02)
        out, err = waiter.communicate(timeout=30)
    finally:
        forger.close()
        proc.kill()
        proc.wait(10)
    assert waiter.returncode == 1, (out, err)
    assert "config reload refused" in out and "backends.b" in out and "forged" not in out


def test_a_second_waiter_for_the_same_router_is_refused(tmp_path):
    proc = stand_in(tmp_path, "ignore")
    first = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    first.bind(reload_verdict.ADDRESS.format(pid=proc.pid))  # as a waiter would
    try:
        done = reload(proc.pid)
    finally:
        first.close()
        proc.kill()
        proc.wait(10)
    assert done.returncode == 1 and "another reload of it is waiting" in done.stderr


def test_a_pid_that_is_not_a_router_is_refused_before_any_signal(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        done = reload(sleeper.pid)
        assert done.returncode == 2 and "is not a running `beacon-router serve`" in done.stderr
        assert sleeper.poll() is None  # SIGHUP would have killed it
        assert reload(1).returncode == 2  # never SIGHUP init
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait(10)
