"""``serve --workers N``: N processes on one port, each with its own spool, and their supervisor.

Each worker binds the port with ``SO_REUSEPORT``, so the kernel spreads connections over them,
and runs the whole router (ingest, pipeline, spool, delivery). With a SQLite spool each worker
owns one file, locked (``spool/shards.py``), so every event is in exactly one file and delivered
from it by exactly one process. A Redis spool is shared by all: each worker is one more consumer.

With ``delivery_target`` (``serve --delivery process``, the default) the workers only ingest
and one more child, the delivery process (router/serve/delivery_process.py), delivers from every
worker's spool file. The supervisor makes the pipe the workers wake it with (one byte per group
commit) and the directory of its state socket before the first fork, and keeps both ends of
the pipe open, so either side may die and come back without the other noticing.

The parent forks the workers after loading the config once (so all share one validated config
and one hash key), restarts a worker that dies, forwards SIGHUP, and on SIGTERM/SIGINT forwards
the signal, waits for every worker to drain, and exits 0 if all exited cleanly. It runs no
event loop and no thread: it waits for signals with ``sigtimedwait``, which cannot race.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .. import multiproc
from ..config import Config
from ..config.loader import load
from ..errors import ConfigError
from ..web.state import WorkerSlot
from . import sdnotify

log = structlog.get_logger(__name__)

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_KILL_MARGIN = 15.0  # seconds past drain_delay + 2 * shutdown_timeout before SIGKILL
_PR_SET_PDEATHSIG = 1


class RestartPolicy:
    """When to restart a worker slot whose process died: at once after a healthy run, with a
    growing delay after deaths soon after start, and never after too many in a row."""

    ran_long_enough = 10.0  # seconds: a worker that lived this long was healthy
    max_quick_deaths = 5  # in a row: it cannot start (bad disk, spool, …); stop trying

    def __init__(self) -> None:
        self.quick_deaths = 0

    def after_death(self, ran: float) -> float | None:
        """Seconds to wait before the restart, or None: give up."""
        self.quick_deaths = 0 if ran >= self.ran_long_enough else self.quick_deaths + 1
        if self.quick_deaths >= self.max_quick_deaths:
            return None
        return 0.0 if not self.quick_deaths else min(30.0, 0.5 * 2 ** (self.quick_deaths - 1))


@dataclass
class _Child:
    slot: WorkerSlot
    pid: int
    started: float


class Supervisor:
    """Forks ``count`` workers running ``target(config, slot)`` and keeps them running."""

    def __init__(
        self,
        config: Config,
        config_file: str,
        count: int,
        target: Callable[[Config, WorkerSlot], int],
        *,
        host: str,
        port: int,
        delivery_target: Callable[[Config, WorkerSlot], int] | None = None,
    ) -> None:
        self.config, self.config_file, self.count = config, config_file, count
        self.target, self.host, self.port = target, host, port
        self.delivery_target = delivery_target  # slot index ``count`` when given
        self.children: dict[int, _Child] = {}  # pid → child
        self._policies = [RestartPolicy() for _ in range(count + 1)]
        self._wake: tuple[int, int] | None = None  # the pipe's (read, write) ends
        self._run_dir: str | None = None  # the delivery process's state socket lives here
        self._restart_at: dict[int, float] = {}  # slot index → monotonic time
        self._stopping_since: float | None = None
        self._clean = True
        self._metrics: multiproc.Directory | None = None
        self._relay: sdnotify.Relay | None = None

    def run(self) -> int:
        """Start the workers and supervise them until they all stopped; the exit code."""
        check_port_free(self.host, self.port)
        # Before the first fork: every worker writes its metrics where any worker reads them.
        self._metrics = multiproc.Directory()
        helpers = int(self.delivery_target is not None)
        children = self.count + helpers
        # Speaks for every child: to systemd (READY=1 …) and to `beacon-router reload`.
        self._relay = sdnotify.Relay.start(self.count, helpers)
        if self.delivery_target is not None:
            self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            for fd in self._wake:  # inherited across fork (not exec): the children need them
                os.set_inheritable(fd, True)
            self._run_dir = tempfile.mkdtemp(prefix="beacon-router-run-")
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            log.info(
                "supervisor started",
                workers=self.count,
                pid=os.getpid(),
                listen=f"{self.host}:{self.port}",
            )
            for index in range(children):
                self._spawn(index, old_mask)
            while self.children or (self._restart_at and self._stopping_since is None):
                waiting = self._relay is not None and self._relay.waiting
                info = signal.sigtimedwait(_SIGNALS, 0.1 if waiting else 0.5)
                if info is not None:
                    self._on_signal(info.si_signo)
                self._reap()
                if self._relay is not None:
                    self._relay.poll(set(self.children))
                self._restart_due(old_mask)
                self._escalate()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self._metrics.remove()
            for fd in self._wake or ():
                os.close(fd)
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
            if self._relay is not None:
                self._relay.close()
        log.info("supervisor stopped", clean=self._clean)
        return 0 if self._clean else 1

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, signo: int) -> None:
        if signo in (signal.SIGTERM, signal.SIGINT):
            if self._stopping_since is None:
                self._stopping_since = time.monotonic()
                self._restart_at.clear()
                if self._relay is not None:
                    self._relay.stopping()
                log.info(
                    "stopping workers",
                    signal=signal.Signals(signo).name,
                    workers=len(self.children),
                )
            self._forward(signo)
        elif signo == signal.SIGHUP:
            started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            errors = self._reload()
            if self._relay is not None:
                self._relay.reloading(set(self.children), started, errors)
            self._forward(signo)

    def _reload(self) -> list[str]:
        """Re-read the config for workers started from now on (the workers reload their own);
        what is wrong with the file, if anything."""
        try:
            self.config = load(self.config_file)
        except ConfigError as exc:
            log.error(
                "config reload failed; restarted workers keep the previous config", error=str(exc)
            )
            return str(exc).splitlines()
        log.info("config reloaded for restarted workers")
        return []

    def _forward(self, signo: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signo)

    # -- children ------------------------------------------------------------------------------

    def _slot(self, index: int) -> tuple[WorkerSlot, Callable[[Config, WorkerSlot], int]]:
        """Slot ``index``'s place and body: an ingest (or inline) worker, or, at ``count``,
        the delivery process."""
        if self._wake is None or self._run_dir is None:
            return WorkerSlot(index, self.count), self.target
        socket_path = os.path.join(self._run_dir, "delivery.sock")
        if index == self.count:
            assert self.delivery_target is not None
            return WorkerSlot(index, self.count, "delivery", self._wake[0], socket_path), \
                self.delivery_target
        return WorkerSlot(index, self.count, "ingest", self._wake[1], socket_path), self.target

    def _spawn(self, index: int, old_mask: object) -> None:
        slot, target = self._slot(index)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = fork_sharing()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # type: ignore[arg-type]
                _exit_with_parent(parent)
                if slot.role == "delivery":
                    structlog.contextvars.bind_contextvars(role="delivery")
                else:
                    structlog.contextvars.bind_contextvars(worker=index)
                code = target(self.config, slot)
            except BaseException:
                log.exception("worker failed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = _Child(slot, pid, time.monotonic())
        if slot.role == "delivery":
            log.info("delivery process started", role="delivery", pid=pid)
        else:
            log.info("worker started", worker=index, pid=pid)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                if self._metrics is not None:
                    self._metrics.worker_died(pid)
                self._exited(child, status)

    def _exited(self, child: _Child, status: int) -> None:
        index = child.slot.index
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if self._stopping_since is not None:
            if code != 0:
                self._clean = False
                log.warning("worker stopped uncleanly", worker=index, pid=child.pid, how=how)
            return
        ran = time.monotonic() - child.started
        delay = self._policies[index].after_death(ran)
        if delay is None:
            log.error("worker keeps dying at start; stopping all workers", worker=index, how=how)
            self._clean = False
            self._stopping_since = time.monotonic()
            self._restart_at.clear()
            self._forward(signal.SIGTERM)
            return
        log.error(
            "worker died; restarting it",
            worker=index,
            pid=child.pid,
            how=how,
            ran_seconds=round(ran, 1),
            restart_in=delay,
        )
        self._restart_at[index] = time.monotonic() + delay

    def _restart_due(self, old_mask: object) -> None:
        now = time.monotonic()
        for index, at in list(self._restart_at.items()):
            if at <= now and self._stopping_since is None:
                del self._restart_at[index]
                self._spawn(index, old_mask)

    def _escalate(self) -> None:
        """SIGKILL workers that outlive every drain they were given (a hung process)."""
        if self._stopping_since is None or not self.children:
            return
        server = self.config.server
        budget = server.drain_delay + 2 * server.shutdown_timeout + _KILL_MARGIN
        if time.monotonic() - self._stopping_since > budget:
            log.error(
                "workers did not stop in time; killing them",
                workers=len(self.children),
                waited_seconds=round(budget, 1),
            )
            self._clean = False
            self._forward(signal.SIGKILL)
            self._stopping_since = time.monotonic()  # give the kernel time; kill again later


def check_port_free(host: str, port: int) -> None:
    """Fail before forking when the port is taken by a process that does not share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))


def fork_sharing() -> int:
    """``os.fork()``, after moving every object alive now (the imported router, the loaded
    config) out of the cyclic collector's reach: a collection in the child then never writes
    to their headers, so the pages they live on stay shared with the supervisor instead of
    being copied into each child (the gc module's advice for fork without exec). Measured:
    the three processes' PSS after load 91 MB with it, 119 MB without (docs/deploy.md)."""
    gc.freeze()
    return os.fork()


def _exit_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this worker when the supervisor dies (even of SIGKILL), so no
    orphan keeps serving and holding its spool lock; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
