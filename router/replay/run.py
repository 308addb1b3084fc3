"""A replay: a store backend's events, read back in pages, delivered to another backend.

The target backend's own delivery worker (``router.delivery.Worker``) does the delivering, as
it does for live events: its `when:`, filters, batching, retry with backoff and dead-letter queue
apply unchanged. Only where its batches come from differs: pages of the archive instead of the
spool. Each event keeps its original uuid, which every vendor backend sends as the vendor's dedup
key, so an event sent twice (a crash between a send and its checkpoint) is counted once.

After each page is finished (delivered, filtered out or dead-lettered) the checkpoint moves past
it; a stop (SIGINT, SIGTERM, the admin API) lets the batch in flight finish first, so an
interrupted replay run again sends every event exactly once. A batch waiting to be retried when
the stop comes is left for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from ..backends.store import StoreBackend
from ..backends.store.archive import Archive, position_of
from ..conditions import Condition
from ..config import Config
from ..delivery import Worker
from ..errors import ConfigError
from ..event import Event, uuid_of_json
from ..metrics import Metrics
from ..spool import Entry, Spool
from . import checkpoint as checkpoints
from .checkpoint import Checkpoint, Selection

log = structlog.get_logger(__name__)

Progress = Callable[[Checkpoint, int], None]  # (checkpoint, total rows selected by time)


class _ArchiveSpool:
    """The spool the target's worker acks and dead-letters into during a replay: acks say a
    page is finished; dead letters go to the target's real dead-letter queue."""

    def __init__(self, dead_letters: Spool | None, redis_ids: bool) -> None:
        self.dead_letters, self.redis_ids = dead_letters, redis_ids
        self.acked = False
        self.dead = 0

    async def ack(self, backend: str, entries: Sequence[Entry]) -> None:
        self.acked = True

    async def dead_letter(self, backend: str, entries: Sequence[tuple[Entry, str]],
                          attempts: int) -> None:
        self.dead += len(entries)
        if self.dead_letters is None:
            return
        letters = [(Entry(self._id(e.body), e.body), why) for e, why in entries]
        # A Redis spool's dead_letter moves what is pending on its stream, which an archived
        # event never was: it keeps such events with keep_dead_letters instead.
        keep = getattr(self.dead_letters, "keep_dead_letters", None)
        if keep is not None:
            await keep(backend, letters, attempts)
        else:
            await self.dead_letters.dead_letter(backend, letters, attempts)

    async def depth(self, backend: str) -> int:
        return 0

    def _id(self, body: bytes) -> int | str:
        # Dead letters are keyed per backend by their spool entry id; an archived event has
        # none, so it gets one from its uuid, outside the ids the spool hands out: negative in
        # SQLite (where the same event dead-lettered twice is kept once), `replay-<uuid>` in
        # Redis.
        uuid = uuid_of_json(body)
        return f"replay-{uuid}" if self.redis_ids else -(int(uuid.replace("-", "")[:13], 16) + 1)


class Replay:
    """One replay job; ``run()`` delivers (or, ``dry_run``, counts) what is left of it."""

    def __init__(self, config: Config, selection: Selection, *, state_dir: str | Path,
                 dead_letters: Spool | None = None, dry_run: bool = False,
                 restart: bool = False, progress: Progress | None = None) -> None:
        self.selection, self.dry_run = selection, dry_run
        source_spec = config.backends.get(selection.source)
        if source_spec is None or source_spec.type != "store":
            stores = sorted(n for n, s in config.backends.items() if s.type == "store")
            raise ConfigError(f"--from {selection.source!r} must name a `type: store` backend "
                              f"of the config; stores: {', '.join(stores) or 'none'}",
                              file=config.file)
        spec = config.backends.get(selection.target)
        if spec is None or selection.target == selection.source:
            raise ConfigError(f"--to {selection.target!r} must name another backend of the "
                              f"config: {', '.join(sorted(config.backends))}", file=config.file)
        self._where = _compile(selection.where)
        self.path = checkpoints.path_for(state_dir, selection)
        self.checkpoint = (Checkpoint(selection) if restart or dry_run
                           else checkpoints.load(self.path, selection))
        self.total = 0
        store = source_spec.build()
        assert isinstance(store, StoreBackend)
        self._archive = Archive(store, selection.since, selection.until)
        self._spool = _ArchiveSpool(dead_letters, redis_ids=config.spool.type == "redis")
        self._metrics = Metrics()
        self._worker = Worker(replace(spec, concurrency=1), spec.build(), self._spool,  # type: ignore[arg-type]
                              self._metrics)
        self._progress = progress
        self._stopping = False

    @property
    def page_size(self) -> int:
        return self._worker.batch_limit

    @property
    def stopped(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        """Finish the batch in flight, then return from ``run()`` (a retry wait is cut short)."""
        self._stopping = True
        await self._worker.stop(0)

    async def run(self) -> Checkpoint:
        cp = self.checkpoint
        try:
            await self._archive.open()
            self.total = await self._archive.count()
            if cp.done:
                return cp
            while not self._stopping:
                events = await self._archive.page(cp.after, self.page_size)
                if not events:
                    cp.done = True
                    break
                chosen = [e for e in events if self._where is None or self._where(e)]
                if not await self._deliver(chosen):
                    break  # stopped while the batch waited for a retry: it is sent next time
                cp.after = position_of(events[-1])
                cp.scanned += len(events)
                cp.matched += len(chosen)
                if not self.dry_run:
                    checkpoints.save(self.path, cp)
                if self._progress is not None:
                    self._progress(cp, self.total)
            if cp.done and not self.dry_run:
                checkpoints.save(self.path, cp)
            return cp
        finally:
            await self._worker.backend.aclose()
            await self._archive.store.aclose()

    async def _deliver(self, events: list[Event]) -> bool:
        """Deliver (or count) one page's selected events; False if it was left unfinished."""
        cp = self.checkpoint
        if self.dry_run:
            cp.delivered += sum(1 for e in events if self._worker.select(e) is not None)
            return True
        if not events:
            return True
        delivered, dead = self._delivered(), self._spool.dead
        self._spool.acked = False
        await self._worker.deliver([Entry(i, e.to_json()) for i, e in enumerate(events)])
        if not self._spool.acked:
            return False
        cp.delivered += self._delivered() - delivered
        cp.dead_lettered += self._spool.dead - dead
        return True

    def _delivered(self) -> int:
        value = self._metrics.registry.get_sample_value(
            "beacon_router_events_delivered_total", {"backend": self.selection.target})
        return int(value or 0)


def _compile(where: Any) -> Callable[[Event], bool] | None:
    if where is None:
        return None
    try:
        return Condition.model_validate(where).compile()
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{at + ': ' if at else ''}{first['msg']}", key="--where") from None
