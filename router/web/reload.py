"""Reload: re-read the YAML and swap pipeline and backends without losing a request or an event.

SIGHUP and ``POST /admin/reload`` both come here, one reload at a time.

* An invalid file — a config error, or a filter or backend that cannot be built — changes
  nothing: the running config stays, and the reason is logged and returned.
* A valid file is swapped in at once for new requests; a request in flight finishes with the
  pipeline it started with. Then, backend by backend: an unchanged backend keeps its worker; a
  removed one stops gracefully and its queue stays in the spool until ``dlq purge`` releases it
  or it is added again; a new one starts at the end of the log; a changed one stops and starts
  again at its durable position, so a batch it had in flight is sent again (at-least-once).
* Some settings are bound when the process starts: ``server.listen`` and ``server.workers``,
  ``admin.listen`` (and opening it by setting ``admin.token``), ``spool``,
  ``sources.posthog``, the set of paths the source profiles serve, and ``stats``. A change to
  one of them keeps the running value, is named in ``restart_required`` and takes effect at the
  next restart (a profile's matching, mapping and answer change at once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog
from aiohttp import web

from ..config import Config
from ..config.loader import load
from ..delivery import Worker
from ..errors import ConfigError
from ..event import now_iso
from ..filters import Pipeline
from ..ingest import Limits
from .state import ROUTER, Router, drop_counter

log = structlog.get_logger(__name__)


@dataclass
class ReloadResult:
    """What a reload did, or why it did nothing (``ok`` false, ``errors``)."""

    ok: bool
    file: str
    at: str = field(default_factory=now_iso)
    errors: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reloader:
    """Reloads one router's config file (see the module docstring)."""

    def __init__(self, router: Router, *, counted: bool = True) -> None:
        """``counted``: this reload adds to ``config_reloads_total`` (the delivery process's
        does not: the ingest processes count each file once, as without it)."""
        self.router = router
        self.counted = counted
        self.last: ReloadResult | None = None
        self.restart_required: list[str] = []  # pending since start, across reloads
        self._lock = asyncio.Lock()

    async def reload(self, between: Callable[[], Awaitable[None]] | None = None
                     ) -> ReloadResult:
        """Re-read the file the running config came from and apply it, or refuse it.
        ``between``: awaited once the changed backends' workers have stopped, before their new
        ones start (the delivery process lines up its spool files there)."""
        async with self._lock:
            result = await self._reload(between)
        metrics = self.router.metrics
        if self.counted:
            metrics.reloads.labels("success" if result.ok else "failure").inc()
        metrics.reload_ok.set(1 if result.ok else 0)
        if result.ok:
            metrics.reload_time.set(time.time())
            self.restart_required = result.restart_required
            log.info(
                "config reloaded",
                file=result.file,
                added=result.added,
                removed=result.removed,
                changed=result.changed,
                restart_required=result.restart_required,
            )
            for name in result.removed:
                log.info(
                    "backend removed; its queue is kept until `dlq purge` or it is added again",
                    backend=name,
                )
        else:
            log.error(
                "config reload refused; the running config stays",
                file=result.file,
                errors=result.errors,
            )
        self.last = result
        return result

    async def _reload(self, between: Callable[[], Awaitable[None]] | None) -> ReloadResult:
        router = self.router
        old = router.config
        refused = ReloadResult(ok=False, file=old.file)
        delivers = router.delivery is not None or router.link is not None
        if not delivers or router.spool is None or router.draining:
            refused.errors = ["the router is not running (starting or stopping)"]
            return refused
        try:
            new = await asyncio.to_thread(load, old.file)
            effective, restart = _effective(old, new)
            pipeline = (
                router.pipeline
                if effective.pipeline == old.pipeline
                else Pipeline(
                    effective.pipeline, on_drop=drop_counter(router.metrics), shared=router.shared
                )
            )
        except ConfigError as exc:
            refused.errors = str(exc).splitlines()
            return refused
        except Exception as exc:  # a filter that cannot be built: a schema file missing, …
            refused.errors = [f"cannot build the pipeline: {type(exc).__name__}: {exc}"]
            return refused

        before, after = old.enabled_backends, effective.enabled_backends
        added = [n for n in after if n not in before]
        removed = [n for n in before if n not in after]
        changed = [n for n in after if n in before and after[n] != before[n]]
        if router.delivery is None:
            # --delivery process: the delivery process got the same SIGHUP and reloads the
            # backends itself (its verdict is in its state and its log); here only what
            # requests read changes.
            self._swap(effective, pipeline)
            return ReloadResult(ok=True, file=old.file, added=added, removed=removed,
                                changed=changed, restart_required=restart)
        attach = getattr(router.spool, "attach", None)
        if (added or changed) and attach is None:
            refused.errors = [
                f"this spool cannot start backends at run time "
                f"({', '.join(added + changed)}); restart to apply the file"
            ]
            return refused
        built: dict[str, Any] = {}
        try:  # every new backend is built before anything changes: a failure changes nothing
            for name in added + changed:
                built[name] = after[name].build()
        except Exception as exc:
            await _close_all(built.values())
            refused.errors = [f"backends.{name}: cannot build: {type(exc).__name__}: {exc}"]
            return refused

        self._swap(effective, pipeline)
        delivery = router.delivery
        leaving = {n: delivery.workers[n] for n in removed + changed if n in delivery.workers}
        await asyncio.gather(*(w.stop(effective.server.shutdown_timeout) for w in leaving.values()))
        await _close_all(w.backend for w in leaving.values())
        if between is not None:
            await between()
        workers = {n: w for n, w in delivery.workers.items() if n not in leaving}
        for name in added + changed:
            assert attach is not None
            await attach(name)  # a changed backend restarts at its durable position
            worker = Worker(after[name], built[name], router.spool, router.metrics,
                            delivery.limits(after[name]))
            worker.start()
            workers[name] = worker
        delivery.workers = workers  # replaced, not mutated: readers iterate the old dict
        for name in removed:
            router.metrics.forget_backend(name)
        return ReloadResult(
            ok=True,
            file=old.file,
            added=added,
            removed=removed,
            changed=changed,
            restart_required=restart,
        )


    def _swap(self, effective: Config, pipeline: Pipeline) -> None:
        """What requests read, swapped in one step: no await in here."""
        router = self.router
        router.config = effective
        router.pipeline = pipeline
        router.limits = Limits.from_server(effective.server)
        router.rate_limits = router.rate_limits.reconfigured(effective.limits)


def _effective(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the settings bound at start kept at their running values, and their names
    where the file changed them."""
    restart: list[str] = []
    server, admin, sources = new.server, new.admin, new.sources
    for key in ("listen", "workers"):
        if getattr(new.server, key, None) != getattr(old.server, key, None):
            restart.append(f"server.{key}")
            server = server.model_copy(update={key: getattr(old.server, key)})
    if new.admin.listen != old.admin.listen:
        restart.append("admin.listen")
        admin = admin.model_copy(update={"listen": old.admin.listen})
    if old.admin.token is None and new.admin.token is not None and old.admin.listen != "same":
        restart.append("admin.token (admin.listen opens at start)")
    if new.profiles.routes() != old.profiles.routes():  # routes are bound when the app starts
        restart.append("the paths of sources profiles (new ones are served after a restart)")
    if new.sources.posthog != old.sources.posthog:
        restart.append("sources.posthog")
        sources = sources.model_copy(update={"posthog": old.sources.posthog})
    spool, stats = new.spool, new.stats
    if new.spool != old.spool:
        restart.append("spool")
        spool = old.spool
    if new.stats != old.stats:
        restart.append("stats")
        stats = old.stats
    return replace(
        new, server=server, admin=admin, sources=sources, spool=spool, stats=stats
    ), restart


async def _close_all(backends: Any) -> None:
    for backend in backends:
        try:
            await backend.aclose()
        except Exception:
            log.exception("backend close failed", backend=getattr(backend, "name", "?"))


RELOADER = web.AppKey("reloader", Reloader)


def add_reloader(app: web.Application) -> Reloader:
    """Give a ``create_app`` app its Reloader (``app[RELOADER]``)."""
    reloader = Reloader(app[ROUTER])
    app[RELOADER] = reloader
    return reloader
