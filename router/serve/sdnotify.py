"""systemd's readiness protocol (sd_notify(3)), spoken without libsystemd.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket (a path, or an
abstract name written ``@name``), and waits for ``READY=1`` before it calls the service started.
The router sends:

- ``READY=1`` once it listens (under ``--workers N``: once every worker listens);
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` when a SIGHUP reload begins, and ``READY=1`` with a
  ``STATUS=`` naming the verdict when it is over (``Type=notify-reload`` relies on this pair);
- ``STOPPING=1`` when the drain begins.

Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op. The supervisor of
``--workers`` listens on a socket of its own (:class:`Listener`) that its workers notify, and
speaks to systemd for all of them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import time

ENV = "NOTIFY_SOCKET"
_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


def notify(*fields: str, address: str | None = None) -> bool:
    """Send ``fields`` (``"READY=1"``, …) as one datagram; False if there is nowhere to send."""
    address = address if address is not None else os.environ.get(ENV, "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(
        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
    ) as sock:
        sock.connect(address)
        sock.sendall("\n".join(fields).encode())
        return True
    return False  # systemd went away (or the socket is not ours to write): nothing to tell


def monotonic_usec() -> str:
    """``MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>``, which systemd pairs with ``RELOADING=1``."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def reloading() -> bool:
    return notify("RELOADING=1", monotonic_usec())


class Listener:
    """A notify socket of our own (for the ``--workers`` supervisor): who sent what."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="beacon-router-notify-")
        self.path = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the sender's pid
        self.sock.setblocking(False)

    def receive(self) -> list[tuple[int, set[str]]]:
        """Every datagram waiting now, as (sender pid, its fields)."""
        out: list[tuple[int, set[str]]] = []
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return out
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
            out.append((pid, set(data.decode(errors="replace").splitlines())))

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self._dir)


class Relay:
    """The ``--workers`` supervisor's side: its workers notify it (their ``$NOTIFY_SOCKET`` is
    its :class:`Listener`), and it tells systemd once for all of them: READY=1 when every worker
    listens, READY=1 after a reload when every live worker has reloaded."""

    def __init__(self, count: int, upstream: str, helpers: int = 0) -> None:
        """``count`` workers listen; ``helpers`` more children (the delivery process) must
        be ready too before systemd hears READY=1."""
        self.count, self.upstream, self.helpers = count, upstream, helpers
        self.listener = Listener()
        os.environ[ENV] = self.listener.path  # inherited by every worker forked from now on
        self.ready: set[int] = set()
        self.ready_sent = False
        self.reloads: dict[int, str] | None = None  # pid → its verdict, during a reload

    @classmethod
    def start(cls, count: int, helpers: int = 0) -> Relay | None:
        """A relay when systemd listens (``$NOTIFY_SOCKET``), else None."""
        upstream = os.environ.get(ENV, "")
        return cls(count, upstream, helpers) if upstream else None

    @property
    def waiting(self) -> bool:
        return not self.ready_sent or self.reloads is not None

    def poll(self, live: set[int]) -> None:
        """Read the workers' notifications; tell systemd what they add up to."""
        for pid, fields in self.listener.receive():
            if "READY=1" not in fields or pid not in live:
                continue
            self.ready.add(pid)
            if self.reloads is not None and pid in self.reloads:
                status = next((f for f in fields if f.startswith("STATUS=")), "STATUS=")
                self.reloads[pid] = status.removeprefix("STATUS=")
        self.ready &= live
        if not self.ready_sent and len(self.ready) >= self.count + self.helpers:
            self.ready_sent = True
            self._send("READY=1", f"STATUS={self.count} workers listening")
        if self.reloads is not None:
            self.reloads = {pid: v for pid, v in self.reloads.items() if pid in live}
            if all(self.reloads.values()):
                refused = sum("refused" in v for v in self.reloads.values())
                verdict = (f"refused by {refused} of {len(self.reloads)} workers" if refused
                           else "applied by every worker")
                self.reloads = None
                self._send("READY=1", f"STATUS=config reload {verdict}")

    def reloading(self, live: set[int]) -> None:
        self.reloads = dict.fromkeys(live, "")
        self._send("RELOADING=1", monotonic_usec())

    def stopping(self) -> None:
        self._send("STOPPING=1", "STATUS=draining")

    def close(self) -> None:
        self.listener.close()
        os.environ[ENV] = self.upstream

    def _send(self, *fields: str) -> None:
        notify(*fields, address=self.upstream)
