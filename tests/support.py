"""Helpers shared by tests: the CI rule for real services, free ports, a router process."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = "redis://127.0.0.1:6379/0"  # the test Redis (CI and this machine)


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is absent on a developer's machine; fail in CI, where it must run."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc.strerror or exc})"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)


async def until(predicate: Callable[[], object | Awaitable[object]], timeout: float = 10.0,
                interval: float = 0.02) -> None:
    """Poll ``predicate`` (plain or async) until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not reached within {timeout:g}s")
        await asyncio.sleep(interval)
@contextlib.contextmanager
def small_filesystem(path: str, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` (e.g. "4m") mounted at ``path`` for the test, unmounted after: a disk
    that really fills. Skips where mounting is impossible (not root, no tmpfs), except in CI."""
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs",
                           path], capture_output=True, text=True)
    if done.returncode != 0:
        message = f"cannot mount a {size} tmpfs (needs root): {done.stderr.strip()}"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def record_fault(fault: str, **figures: object) -> None:
    """Append a fault test's figures (acked, lost, duplicated, …) to the file named by
    ``$FAULT_RECORD``, if set: bench/faults/campaign.py runs the fault tests and sums them."""
    path = os.environ.get("FAULT_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"fault": fault, **figures}) + "\n")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# free_port() used to bind port 0 and release it: a port of the kernel's ephemeral range, which
# every outgoing connection on the machine draws its local port from. Between the release and
# the router's bind, a client socket could take it, and a worker died of EADDRINUSE at start
# (a CI flake in test_supervisor). So the tests' ports lie below that range, where the kernel
# never hands a port out by itself, and each xdist worker has a slice of its own.
_SLICE, _SLICES = 1500, 8
_PORTS_FROM = _ephemeral_low() - _SLICE * _SLICES
_next_port = itertools.count()


def free_port() -> int:
    """A loopback port nothing uses now and no other test process will be given."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _PORTS_FROM + (int(worker) if worker.isdigit() else 0) % _SLICES * _SLICE
    for _ in range(_SLICE):
        port = first + next(_next_port) % _SLICE
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # a service of the machine, or a port a test still holds
                continue
        return port
    raise RuntimeError(f"no free port in {first}-{first + _SLICE - 1}")


class RouterProcess:
    """``beacon-router serve`` as a real subprocess, for tests that kill it."""

    def __init__(self, config: str, port: int, workdir: str, *,
                 args: tuple[str, ...] = ("--log-format", "json"),
                 env: dict[str, str] | None = None) -> None:
        self.config, self.port, self.workdir = config, port, workdir
        self.args, self.env = args, env or {}
        self.log = os.path.join(workdir, "router.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "router.cli", "serve", "--config", self.config,
                 "--listen", f"127.0.0.1:{self.port}", *self.args],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": REPO, **self.env},
                start_new_session=True)  # its own process group: kill9 reaches every child

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"router exited {self.proc.returncode}:\n{self.logs()}")
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        # Under --delivery process: ready once delivery answers too.
                        body = await resp.json() if resp.status == 200 else {}
                        if resp.status == 200 and (body.get("delivery") or {}).get(
                                "process", "running") == "running":
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"router not ready after {timeout}s:\n{self.logs()}")

    def kill9(self) -> None:
        """kill -9 of the router: the process, and its children under a supervisor
        (``--workers``, ``--delivery process``), all at once."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def logs(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-5000:]


class TcpProxy:
    """A loopback TCP proxy to a real server that a test can cut and restore: an outage of
    the server as the router sees it (connections reset, new ones refused)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


class WebhookReceiver:
    """A real webhook endpoint on loopback: records, per path, which events it was sent (and
    by whom, from the ``X-Router`` header when the router's config sets one)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: dict[str, list[tuple[str, list[str]]]] = {}
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        uuids = [e["uuid"] for e in body["events"]]
        sender = request.headers.get("X-Router", "")
        self.requests.setdefault(request.path, []).append((sender, uuids))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def received(self, path: str = "/hook") -> Counter[str]:
        """How often each event uuid arrived at ``path``."""
        return Counter(u for _, uuids in self.requests.get(path, []) for u in uuids)

    async def wait_for(self, wanted: set[str], paths: tuple[str, ...] = ("/hook",),
                       timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(wanted <= set(self.received(p)) for p in paths):
                return
            await asyncio.sleep(0.05)
        missing = {p: len(wanted - set(self.received(p))) for p in paths}
        raise AssertionError(f"acknowledged events never arrived: {missing}")


EVENT_IDS = "sources: {profiles: [{name: test-beacon, paths: [/beacon], event_id: uuid}]}\n"
"""A config line making ``beacon()``'s ``uuid`` the event's uuid, so a test can follow each
acknowledged beacon to a backend (a beacon's fields are never its event id otherwise)."""


def beacon() -> dict[str, object]:
    """A beacon with its own uuid and installation id."""
    return {"uuid": str(uuid.uuid4()), "installation_id": str(uuid.uuid4()),
            "version": "1.4.2", "platform": {"os": "linux"}}


async def send_beacon(http: aiohttp.ClientSession, url: str, acked: list[str]) -> None:
    """POST one beacon; remember its uuid only if the router answered 202."""
    b = beacon()
    try:
        async with http.post(f"{url}/beacon", json=b) as resp:
            if resp.status == 202:
                acked.append(str(b["uuid"]))
    except (TimeoutError, aiohttp.ClientError):
        pass  # not acknowledged: the router owes nothing for it
