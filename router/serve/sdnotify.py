"""systemd's readiness protocol (sd_notify(3)), spoken without libsystemd.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket (a path, or an
abstract name written ``@name``), and waits for ``READY=1`` before it calls the service started.
The router sends:

- ``READY=1`` once it listens (under ``--workers N``: once every worker listens);
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` when a SIGHUP reload begins, and ``READY=1`` with a
  ``STATUS=`` naming the verdict when it is over (``Type=notify-reload`` relies on this pair),
  and the verdict as JSON in ``X_BEACON_ROUTER_RELOAD=``, which the ``--workers`` supervisor
  adds up (systemd ignores ``X_`` fields);
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
from dataclasses import dataclass
from typing import Any

import orjson

from . import reload_verdict

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
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
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
    its :class:`Listener`), and it speaks once for all of them — to systemd when it listens
    (READY=1 when every worker listens, READY=1 after a reload when every live worker has
    reloaded) and to a waiting ``beacon-router reload`` (the reload's verdict, every worker's
    errors together; router/serve/reload_verdict.py)."""

    def __init__(self, count: int, upstream: str, helpers: int = 0) -> None:
        """``count`` workers listen; ``helpers`` more children (the delivery process) must
        be ready too before systemd hears READY=1."""
        self.count, self.upstream, self.helpers = count, upstream, helpers
        self.listener = Listener()
        os.environ[ENV] = self.listener.path  # inherited by every worker forked from now on
        self.ready: set[int] = set()
        self.ready_sent = False
        self.reload: _Reload | None = None  # the reload in progress

    @classmethod
    def start(cls, count: int, helpers: int = 0) -> Relay:
        """A relay to systemd when it listens (``$NOTIFY_SOCKET``); without it only the
        verdicts for ``beacon-router reload`` go anywhere."""
        return cls(count, os.environ.get(ENV, ""), helpers)

    @property
    def waiting(self) -> bool:
        return not self.ready_sent or self.reload is not None

    def poll(self, live: set[int]) -> None:
        """Read the workers' notifications; tell systemd what they add up to."""
        for pid, fields in self.listener.receive():
            if "READY=1" not in fields or pid not in live:
                continue
            self.ready.add(pid)
            if self.reload is not None and pid in self.reload.verdicts:
                self.reload.verdicts[pid] = worker_verdict(fields)
        self.ready &= live
        if not self.ready_sent and len(self.ready) >= self.count + self.helpers:
            self.ready_sent = True
            self._send("READY=1", f"STATUS={self.count} workers listening")
        if self.reload is not None:
            self.reload.verdicts = {p: v for p, v in self.reload.verdicts.items() if p in live}
            if all(v is not None for v in self.reload.verdicts.values()):
                self._reloaded(self.reload)
                self.reload = None

    def reloading(self, live: set[int], started: int, errors: list[str]) -> None:
        """A SIGHUP reload begins; ``errors``: the supervisor's own reading of the file."""
        self.reload = _Reload(started, errors, dict.fromkeys(live))
        self._send("RELOADING=1", monotonic_usec())

    def stopping(self) -> None:
        self._send("STOPPING=1", "STATUS=draining")

    def close(self) -> None:
        self.listener.close()
        os.environ[ENV] = self.upstream

    def _reloaded(self, reload: _Reload) -> None:
        verdicts = [v for v in reload.verdicts.values() if v is not None]
        refused = sum(not v.get("ok") for v in verdicts)
        if refused:
            status = f"config reload refused by {refused} of {len(verdicts)} workers"
        elif reload.errors:  # no worker alive to ask, and the file does not load
            status = "config reload refused; the running config stays"
        else:
            status = "config reload applied by every worker"
        errors = list(dict.fromkeys(reload.errors + [e for v in verdicts for e in v["errors"]]))
        later = list(dict.fromkeys(n for v in verdicts for n in v["restart_required"]))
        self._send("READY=1", f"STATUS={status}")
        reload_verdict.send(reload.started, not refused and not reload.errors, status, errors,
                            later)

    def _send(self, *fields: str) -> None:
        notify(*fields, address=self.upstream)


@dataclass
class _Reload:
    started: int  # CLOCK_MONOTONIC ns when the supervisor got the SIGHUP
    errors: list[str]
    verdicts: dict[int, dict[str, Any] | None]  # worker pid → its verdict, once it answered


VERDICT = "X_BEACON_ROUTER_RELOAD"  # sd_notify(3): custom fields start with X_


def worker_verdict(fields: set[str]) -> dict[str, Any]:
    """A worker's reload verdict from its READY=1 (the JSON in :data:`VERDICT`)."""
    for field in fields:
        if field.startswith(VERDICT + "="):
            with contextlib.suppress(orjson.JSONDecodeError):
                verdict = orjson.loads(field[len(VERDICT) + 1:])
                if isinstance(verdict, dict):
                    return verdict
    return {"ok": False, "errors": ["a worker answered without its verdict"],
            "restart_required": []}
