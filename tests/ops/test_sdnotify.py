"""systemd's notify protocol against a socket the test listens on, as systemd would: a real
``beacon-router serve`` (one process, and ``--workers 2``) says READY=1 once it listens,
RELOADING=1 + MONOTONIC_USEC … READY=1 around a SIGHUP reload, STOPPING=1 when it drains."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time

import aiohttp
import pytest
from support import RouterProcess, free_port

CONFIG = """
server: {drain_delay: 0s, shutdown_timeout: 2s}
spool: {path: ./data/spool.db}
backends:
  out: {type: stdout}
"""
BROKEN = CONFIG + "  bad: {type: nope}\n"


class NotifySocket:
    """What systemd listens on: a unix datagram socket; each message with its sender's pid."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setblocking(False)

    async def next(self, timeout: float = 30.0) -> tuple[int, dict[str, str]]:
        """The next message: (sender pid, its fields)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("no notification") from None
                await asyncio.sleep(0.02)
                continue
            [(_, _, creds)] = anc
            pid = struct.unpack("iII", creds[:12])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            return pid, fields

    async def quiet(self, seconds: float = 0.5) -> None:
        """Nothing more arrives for ``seconds``."""
        await asyncio.sleep(seconds)
        with pytest.raises(BlockingIOError):
            self.sock.recv(4096)


@pytest.fixture
def systemd(tmp_path):
    notify = NotifySocket(str(tmp_path / "notify"))
    yield notify
    notify.sock.close()


async def ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


def router_for(tmp_path, systemd, *args: str) -> RouterProcess:
    (tmp_path / "router.yaml").write_text(CONFIG)
    return RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path),
                         args=("--log-format", "json", *args),
                         env={"NOTIFY_SOCKET": systemd.path})


async def reload_and_expect(router, systemd, verdict: str) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    router.proc.send_signal(signal.SIGHUP)
    pid, first = await systemd.next()
    assert pid == router.proc.pid and first["RELOADING"] == "1"
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(first["MONOTONIC_USEC"]) <= after
    pid, done = await systemd.next()
    assert pid == router.proc.pid and done["READY"] == "1"
    assert verdict in done["STATUS"]


@pytest.mark.parametrize("workers", [None, 2], ids=["one-process", "two-workers"])
async def test_ready_reloading_and_stopping_reach_the_notify_socket(tmp_path, systemd, workers):
    router = router_for(tmp_path, systemd, *(("--workers", str(workers)) if workers else ()))
    router.start()
    try:
        pid, fields = await systemd.next()
        # Only the main process speaks to systemd (NotifyAccess=main), and only once it serves.
        assert pid == router.proc.pid and fields["READY"] == "1", fields
        assert await ready(router.url)
        if workers:
            assert fields["STATUS"] == "2 workers listening"
            assert router.logs().count('"message": "listening"') == 2
        await systemd.quiet()  # a worker's own READY=1 never reaches systemd

        await reload_and_expect(router, systemd, "applied")
        (tmp_path / "router.yaml").write_text(BROKEN)
        await reload_and_expect(router, systemd, "refused")

        router.proc.send_signal(signal.SIGTERM)
        pid, fields = await systemd.next()
        assert pid == router.proc.pid and fields["STOPPING"] == "1"
        assert router.proc.wait(30) == 0
    finally:
        router.stop()


async def test_without_a_notify_socket_nothing_is_sent_and_serving_is_unchanged(tmp_path):
    (tmp_path / "router.yaml").write_text(CONFIG)
    router = RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path))
    env_before = os.environ.pop("NOTIFY_SOCKET", None)
    try:
        router.start()
        await router.wait_ready()
        router.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "config reloaded" not in router.logs():
            assert time.monotonic() < deadline, router.logs()
            await asyncio.sleep(0.05)
        assert router.terminate() == 0
    finally:
        router.stop()
        if env_before is not None:
            os.environ["NOTIFY_SOCKET"] = env_before
