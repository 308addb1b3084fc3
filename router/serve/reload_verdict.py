"""``beacon-router reload --pid PID``: SIGHUP a running router and wait for the reload's verdict.

``ExecReload=/bin/kill -HUP $MAINPID`` returns as soon as the signal is sent, so ``systemctl
reload`` says nothing about a file the router then refuses. systemd 253's ``Type=notify-reload``
waits for the router's ``READY=1``, but Debian 12 ships systemd 252. This command is the
``ExecReload=`` that works everywhere: it exits 0 once the new config is applied, 1 with the
errors when the router refused it (the running config stays), so ``systemctl reload`` fails
loudly with the reason in the journal.

The protocol, all local:

1. The waiter binds the abstract unix datagram socket ``@beacon-router/reload/<PID>`` (abstract:
   nothing on disk to clean up, gone with the process) with ``SO_PASSCRED``, so the kernel tells
   it which process sent each datagram. A second waiter for the same PID cannot bind it.
2. It notes ``CLOCK_MONOTONIC`` and sends SIGHUP to PID.
3. When a SIGHUP reload is over, the router (the supervisor under ``--workers``, once every
   worker has answered) sends one JSON datagram to the address named after its own pid:
   ``{"started": ns, "ok": bool, "status": str, "errors": [...], "restart_required": [...]}``.
   With nobody bound the send fails at once and is ignored.
4. The waiter accepts only a datagram whose kernel-checked sender is PID and whose reload
   started after its signal (an earlier reload finishing meanwhile is not its verdict).

Only the verdict crosses the socket: the config errors name file, line and key, never a value
that ``check --show`` would mask.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import struct
import sys
import time
from typing import Any

import orjson

ADDRESS = "\0beacon-router/reload/{pid}"  # abstract namespace: the leading NUL
_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid
_MAX_ERRORS = 20  # a datagram, not a report: the log has every line
_DATAGRAM = 65536
HELP = ("Reload a running router's config (SIGHUP) and wait for the verdict: exit 0 applied, "
        "1 refused (the running config stays) or no answer; for systemd's ExecReload=.")


def send(started: int, ok: bool, status: str, errors: list[str],
         restart_required: list[str] | None = None, *, pid: int | None = None) -> bool:
    """Tell a waiting ``beacon-router reload`` the verdict; False if nobody waits."""
    body = orjson.dumps({
        "started": started,
        "ok": ok,
        "status": status,
        "errors": [e[:1000] for e in errors[:_MAX_ERRORS]],
        "restart_required": restart_required or [],
    })
    with contextlib.suppress(OSError), socket.socket(
        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
    ) as sock:
        sock.connect(ADDRESS.format(pid=os.getpid() if pid is None else pid))
        sock.send(body)
        return True
    return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pid", type=int, required=True,
                   help="the router's main process (systemd: $MAINPID)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the verdict (default 60)")
    p.add_argument("--output", "-o", choices=["text", "json"], default="text",
                   help="json: the verdict as one JSON document on stdout, for scripts")


def run(args: argparse.Namespace) -> int:
    """Exit 0: applied; 1: refused, or no verdict (timeout, the router exited); 2: bad usage."""
    pid = args.pid
    if pid <= 1 or not _is_router(pid):
        return _fail(f"pid {pid} is not a running `beacon-router serve`", code=2)
    try:
        verdict = wait_for_verdict(pid, args.timeout)
    except (OSError, TimeoutError) as exc:
        return _fail(str(exc))
    if args.output == "json":
        sys.stdout.write(orjson.dumps(verdict, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(f"beacon-router: {verdict['status']}")
        for error in verdict["errors"]:
            print(f"  {error}")
        if verdict["restart_required"]:
            print("  takes effect at the next restart: " + ", ".join(verdict["restart_required"]))
    return 0 if verdict["ok"] else 1


def wait_for_verdict(pid: int, timeout: float) -> dict[str, Any]:
    """SIGHUP ``pid`` and return its reload's verdict; OSError/TimeoutError say why not."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.bind(ADDRESS.format(pid=pid))
        except OSError as exc:
            raise OSError(f"cannot wait for pid {pid}'s verdict: another reload of it is "
                          f"waiting ({exc.strerror})") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(0.2)  # how often we look whether the router is still there
        signalled = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise OSError(f"pid {pid} is not running") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, ancillary, _, _ = sock.recvmsg(_DATAGRAM, socket.CMSG_SPACE(12))
            except TimeoutError:
                if not _alive(pid):
                    raise OSError(f"pid {pid} exited before its reload's verdict; "
                                  "see its log") from None
                continue
            if _sender(ancillary) != pid:
                continue  # not the router: anyone may send to an abstract socket
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                verdict = orjson.loads(data)
                if isinstance(verdict, dict) and verdict.get("started", 0) >= signalled:
                    return verdict
        raise TimeoutError(f"no verdict from pid {pid} within {timeout:g} s; the reload may "
                           "still be running: see its log")


def _sender(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return int(_CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0])
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    return True


def _is_router(pid: int) -> bool:
    """A guard against a wrong PID (SIGHUP to pid 1 makes systemd reload itself): its command
    line must say ``… router … serve``. Where /proc cannot be read, trust the caller."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return b"serve" in argv and any(b"router" in arg for arg in argv)


def _fail(message: str, *, code: int = 1) -> int:
    print(f"beacon-router: {message}", file=sys.stderr)
    return code
