"""One store's statistics: its reader, its day index and the public report's cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from ..backends.store import StoreOptions, parse_url
from ..config import BackendSpec, Config, StatsConfig
from ..errors import StoreUnavailable
from ..event import iso_z
from .days import DayIndex
from .kanon import at_least, k_anonymous
from .queries import SqliteReader, StoreReader
from .report import Range, build_report

log = structlog.get_logger(__name__)
PUBLIC_DAYS = 30  # the public page describes the last 30 days, nothing older


def open_reader(options: StoreOptions, dimensions: Sequence[str], event: str | None) -> StoreReader:
    """A reader for the store a ``type: store`` backend's options describe."""
    kind, target = parse_url(options.url)
    if kind == "sqlite":
        return SqliteReader(Path(target), options.table, dimensions, event)
    # The optional postgres extra (checked at config load): imported only by a config with a
    # PostgreSQL store, so that every other router process does not carry asyncpg.
    from .postgres import PostgresReader

    password = options.password.get_secret_value() if options.password else None
    return PostgresReader(
        target,
        f'"{options.schema_ or "public"}"."{options.table}"',
        dimensions,
        event,
        password=password or None,
        timeout=options.timeout,
    )


def store_backend(config: Config) -> BackendSpec | None:
    """The backend ``stats.store`` names, else the first ``type: store`` one, else None."""
    if config.stats.store is not None:
        return config.backends[config.stats.store]  # config validation checked it is a store
    return next((b for b in config.enabled_backends.values() if b.type == "store"), None)


def read_dimensions(settings: StatsConfig) -> tuple[str, ...]:
    """Every dimension either report may show, in a fixed order: what the reader extracts."""
    return tuple(dict.fromkeys((*settings.dimensions, *(settings.public_dimensions or ()))))


def utc_today() -> date:
    return datetime.now(UTC).date()


class Stats:
    """Reports over one store; build with :meth:`from_config`, close with :meth:`aclose`."""

    def __init__(
        self,
        settings: StatsConfig,
        reader: StoreReader,
        *,
        recheck: float = 10.0,
        full_recheck: float = 300.0,
        today: Callable[[], date] = utc_today,
    ) -> None:
        self.settings = settings
        self.public_dimensions = settings.public_dimensions or settings.dimensions
        self.dimensions = read_dimensions(settings)
        self.reader = reader
        self.index = DayIndex(
            reader, len(self.dimensions), recheck=recheck, full_recheck=full_recheck
        )
        self.today = today
        self._public: tuple[float, dict[str, Any]] | None = None

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> Stats | None:
        """Statistics over the config's store backend; None when it has none."""
        spec = store_backend(config)
        if spec is None or not isinstance(spec.options, StoreOptions):
            return None
        reader = open_reader(spec.options, read_dimensions(config.stats), config.stats.event)
        return cls(config.stats, reader, **kwargs)

    async def report(self, span: Range, selected: Sequence[str] | None = None) -> dict[str, Any]:
        """The full report (the admin API, the dashboard, ``beacon-router stats``)."""
        today = self.today()
        await self.index.refresh(today)
        # A year by day is ~0.1 s of big-int work: off the event loop, which serves ingest.
        return await asyncio.to_thread(
            build_report,
            self.index,
            span,
            self.dimensions,
            list(selected if selected is not None else self.settings.dimensions),
            today,
            round(self.settings.churn_after / 86400),
        )

    async def warm(self) -> None:
        """Read every stored day now (at startup), so the first report does not wait for it."""
        try:
            await self.index.refresh(self.today(), force=True)
        except StoreUnavailable as exc:
            log.warning("stats: store unreadable, will retry on the first request", reason=str(exc))
        else:
            log.info(
                "stats: store read",
                installations=self.index.installations,
                days=len(self.index.days),
            )

    async def public(self) -> dict[str, Any]:
        """The k-anonymous public report, recomputed at most once per ``stats.cache``."""
        now = time.monotonic()
        if self._public is not None and now - self._public[0] < self.settings.cache:
            return self._public[1]
        # Complete days only: today's partial count would read as a drop every morning.
        yesterday = self.today() - timedelta(days=1)
        span = Range.parse(
            None, yesterday.isoformat(), "day", self.today(), default_days=PUBLIC_DAYS
        )
        full = await self.report(span, self.public_dimensions)
        k, totals = self.settings.k, full["totals"]
        body = {
            "generated_at": iso_z(datetime.now(UTC), "seconds"),
            "from": full["from"],
            "to": full["to"],
            "k": k,
            "active": {
                "1d": at_least(totals["active_1d"], k),
                "7d": at_least(totals["active_7d"], k),
                "30d": at_least(totals["active_30d"], k),
            },
            "breakdowns": {
                name: [
                    {"value": v, "installations": n}
                    for v, n in k_anonymous(((b["value"], b["installations"]) for b in buckets), k)
                ]
                for name, buckets in full["breakdowns"].items()
            },
        }
        self._public = (now, body)
        return body

    async def aclose(self) -> None:
        await self.reader.aclose()
