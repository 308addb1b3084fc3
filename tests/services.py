"""Services a test owns and restarts: a PostgreSQL cluster and a redis-server of its own.

The shared PostgreSQL and Redis (127.0.0.1:5432, :6379) must never be restarted by a test;
these run on their own port and data directory, made for the test and removed after.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from support import IN_CI, free_port


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class PostgresCluster:
    """``initdb`` + ``pg_ctl`` on a scratch data directory and a free port (trust auth)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        bindir = os.path.dirname(found[-1]) if found else ""
        if not bindir and shutil.which("initdb"):
            bindir = os.path.dirname(shutil.which("initdb") or "")
        if not bindir:
            _unavailable("no PostgreSQL server binaries (initdb) on this machine")
        self.bindir = bindir
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root, and initdb refuses root.
        self.root = tempfile.mkdtemp(prefix="beacon-pg-")
        self.datadir = os.path.join(self.root, "data")
        self.logfile = os.path.join(self.root, "server.log")
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, self.user)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:2])} failed: {done.stderr}{self.log()}")

    def init(self) -> None:
        self._run("initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c fsync=on -c shared_buffers=16MB")
        self._run("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-o", options, "-w", "start")
        _wait_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """``mode``: fast (clean), immediate (a crash: recovery from the WAL on next start)."""
        self._run("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            with contextlib.suppress(AssertionError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-3000:]
        except OSError:
            return ""


class RedisServer:
    """A ``redis-server`` with AOF on, on a free port and a data directory of its own."""

    def __init__(self, appendfsync: str = "always") -> None:
        self.binary = shutil.which("redis-server") or ""
        if not self.binary:
            _unavailable("no redis-server binary on this machine")
        self.appendfsync = appendfsync
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="beacon-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(os.path.join(self.root, "server.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", self.root, "--appendonly", "yes",
                 "--appendfsync", self.appendfsync, "--save", "",
                 "--maxmemory-policy", "noeviction"],
                stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def remove(self) -> None:
        self.kill9()
        shutil.rmtree(self.root, ignore_errors=True)
