"""Processes the bench starts: free loopback ports, start/stop with a log file, memory from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on at the moment (the kernel's pick on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once something accepts connections on 127.0.0.1:port; RuntimeError if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(0.5)
            sock.connect((LOOPBACK, port))
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s")


class Proc:
    """A child process with its output in a log file; ``stop`` ends it (and only it) politely."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)  # a fresh clone has no bench/results/tmp
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by ``pid`` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in _tree(pid):
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant alive now."""
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                stack.extend(int(child) for child in task.read_text().split())
    return out


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes (0 if it is gone).

    A sum of RSS counts every page the processes share once per process: the forked children
    of ``serve`` share the supervisor's imported code and data copy-on-write, so this sum
    overstates what the tree costs. :func:`tree_pss` is that cost; both are recorded."""
    return _tree_sum(pid, "/proc/{}/status", "VmRSS:")


def tree_pss(pid: int) -> int:
    """Proportional set size of ``pid``'s tree, in bytes: each page divided by the number of
    processes mapping it, so shared pages count once in all. This is the memory the tree takes
    from the machine (what a cgroup would charge it, less the page cache of its files)."""
    return _tree_sum(pid, "/proc/{}/smaps_rollup", "Pss:")


def _tree_sum(pid: int, path: str, field: str) -> int:
    total = 0
    for current in _tree(pid):
        try:
            text = Path(path.format(current)).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(field):
                total += int(line.split()[1]) * 1024
                break
    return total


class RssSampler:
    """Samples a process tree's RSS sum and PSS every ``interval`` seconds in a thread, while in
    a ``with``."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int]] = []  # (seconds since start, rss, pss bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = 0.0

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.pid)
            if rss:
                self.samples.append((time.monotonic() - self._started, rss, tree_pss(self.pid)))
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        """The highest RSS sum sampled."""
        return max((rss for _, rss, _ in self.samples), default=0)

    @property
    def peak_pss(self) -> int:
        """The highest PSS sampled: the tree's real peak footprint."""
        return max((pss for _, _, pss in self.samples), default=0)
