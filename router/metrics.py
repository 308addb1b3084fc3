"""Prometheus metrics, one registry per app (so several apps in one test process don't clash).

Names follow ``beacon_router_<what>_<unit>``; counters get ``_total`` from the client library.
docs/metrics.md lists every metric with its meaning; keep the two in step.

Besides the router's own, a scrape shows the client library's process (CPU, memory, open
files) and platform (Python version) metrics. Under ``serve --workers N`` the values live in
prometheus-client's multiprocess files (router/multiproc.py), so any worker's answer covers
every worker; each gauge says how its workers' values combine (``multiprocess_mode``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder

from . import __version__, multiproc
from .event import Event
from .speedups import in_use as native_in_use
from .tally import CounterFamily, CounterTally, HistogramFamily, Tallies

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what a scrape that asks for nothing else gets

# No `_created` series beside every counter and histogram: they double the output and the
# text format gives them no meaning a dashboard uses.
disable_created_metrics()


class Metrics:
    """Every metric the router exports; names follow ``beacon_router_<what>_<unit>``."""

    def __init__(self, *, shared_spool: bool = False) -> None:
        """``shared_spool``: every worker sees the same spool (Redis), so under ``--workers``
        its gauges are the largest worker's value, not the sum of per-worker files."""
        self.registry = r = CollectorRegistry(auto_describe=True)
        spool_mode: Literal["livemax", "livesum"] = "livemax" if shared_spool else "livesum"
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        p = "beacon_router_"
        # -- ingest: counted per request as plain numbers (router.tally), read at scrape time;
        # under --workers flushed into prometheus-client's files, which any worker's scrape reads
        received = ("events_received", "Events decoded from requests.", ["source"])
        accepted = ("events_accepted", "Events written durably to the spool.", ["source"])
        latency = ("request_duration_seconds", "Ingest request time.", ["route"])
        tallies = Tallies()
        self.received = tallies.counter(p + received[0], *received[1:])
        self.accepted = tallies.counter(p + accepted[0], *accepted[1:])
        self.request_latency = tallies.histogram(p + latency[0], *latency[1:], _LATENCY_BUCKETS)
        self._files: list[tuple[CounterFamily | HistogramFamily, Any]] = []
        if multiproc.enabled():
            self._files = [
                (self.received, Counter(p + received[0], *received[1:], registry=r)),
                (self.accepted, Counter(p + accepted[0], *accepted[1:], registry=r)),
                (self.request_latency, Histogram(p + latency[0], *latency[1:],
                                                 buckets=_LATENCY_BUCKETS, registry=r)),
            ]
        else:
            r.register(tallies)
        self.rejected = Counter(
            p + "requests_rejected",
            "Requests answered with an error.",
            ["source", "reason"],
            registry=r,
        )
        self.dropped = Counter(
            p + "events_dropped",
            "Events dropped by a filter.",
            ["stage", "filter", "reason"],
            registry=r,
        )
        # -- delivery
        self.delivered = Counter(
            p + "events_delivered", "Events a backend accepted.", ["backend"], registry=r
        )
        self.failed = Counter(
            p + "delivery_failures",
            "Failed send attempts (batches).",
            ["backend", "kind"],
            registry=r,
        )
        self.retried = Counter(
            p + "events_retried", "Events scheduled for another attempt.", ["backend"], registry=r
        )
        self.dead_lettered = Counter(
            p + "events_dead_lettered", "Events moved to the DLQ.", ["backend"], registry=r
        )
        self.backend_up = Gauge(
            p + "backend_healthy", "1 if the last send succeeded.", ["backend"], registry=r,
            multiprocess_mode="livemin",  # under --workers: 0 if any worker's last send failed
        )
        self.batch_size = Histogram(
            p + "batch_size_events",
            "Events per batch sent.",
            ["backend"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.send_latency = Histogram(
            p + "send_duration_seconds",
            "Time of one send.",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # -- spool (measured at scrape time by collect_spool)
        self.spool_depth = Gauge(
            p + "spool_depth_events", "Events a backend has not acked.", ["backend"], registry=r,
            multiprocess_mode=spool_mode,
        )
        self.spool_oldest_age = Gauge(
            p + "spool_oldest_event_age_seconds",
            "Age of the oldest event a backend has not acked (0 when none waits).",
            ["backend"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.dead_letters = Gauge(
            p + "dead_letter_events", "Events in a backend's DLQ.", ["backend"], registry=r,
            multiprocess_mode=spool_mode,
        )
        self.spool_bytes = Gauge(p + "spool_used_bytes", "Bytes in use in the spool.", registry=r,
                                 multiprocess_mode=spool_mode)
        # -- configuration
        self.reloads = Counter(
            p + "config_reloads", "Config reloads, by result.", ["result"], registry=r
        )
        self.reload_ok = Gauge(
            p + "config_last_reload_successful",
            "1 if the last reload applied the file, 0 if it was refused.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.reload_time = Gauge(
            p + "config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (Unix time).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.build_info = Gauge(
            p + "build_info", "Always 1; the version and the C modules in use are in labels.",
            ["version", "native"], registry=r, multiprocess_mode="livemax",
        )
        self.build_info.labels(__version__, native_in_use()).set(1)
        self.reload_ok.set(1)
        self.reload_time.set(time.time())
        for result in ("success", "failure"):
            self.reloads.labels(result)  # both series exist from the start, at 0
        self._exposed = CollectorRegistry()  # no auto_describe: the parts never clash
        for collector in (r, PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
            self._exposed.register(collector)

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: ``labels()`` takes a lock and builds a
        key on every call, which shows in the ingest profile. Only for bounded label sets."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def value(self, metric: Any, *labels: str) -> float:
        """The current value of one counter series, a tally or prometheus_client's (tests)."""
        series = metric.labels(*labels)
        return float(series.value if isinstance(series, CounterTally) else series._value.get())

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its Content-Type (with its ``version=``), in the format the
        scraper's ``Accept`` asks for: Prometheus text 0.0.4 by default, or OpenMetrics."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.exposition()), content_type

    def exposition(self) -> CollectorRegistry:
        """What a scrape shows: this registry plus process and platform metrics, or under
        ``serve --workers`` every worker's values from the multiprocess files."""
        if multiproc.enabled():
            self.flush()  # this process's own counts, exact; the others' at most a second old
            return multiproc.registry()
        return self._exposed

    def flush(self) -> None:
        """Under multiprocess mode, copy the ingest tallies into this process's metric files
        (every second, before a scrape and at exit: router/multiproc.py)."""
        for family, file_backed in self._files:
            family.flush_to(file_backed)

    def forget_backend(self, name: str) -> None:
        """Drop a removed backend's per-backend gauges (its counters keep their totals)."""
        for gauge in (self.backend_up, self.spool_oldest_age):
            with contextlib.suppress(KeyError):  # never set: nothing to drop
                gauge.remove(name)


async def collect_spool(metrics: Metrics, spool: Any, backends: Iterable[str]) -> None:
    """Measure the spool for a scrape: depth, oldest event age and dead letters per backend.

    Queues the spool keeps for backends no longer configured are measured too: they hold
    events back from compaction until ``dlq purge`` releases them, so ops should see them.
    """
    metrics.spool_bytes.set(getattr(spool, "used_bytes", 0))
    configured = list(backends)
    depths = {name: await spool.depth(name) for name in configured}
    dead = await spool.dead_letter_counts()
    for name, queued in (await spool.queues()).items():
        depths.setdefault(name, queued)
    peek = getattr(spool, "peek", None)  # not every spool can show its oldest entry
    now = time.time()
    for name, queued in depths.items():
        metrics.spool_depth.labels(name).set(queued)
        metrics.dead_letters.labels(name).set(dead.get(name, 0))
        if peek is not None and name in configured:
            entry = await peek(name) if queued else None
            metrics.spool_oldest_age.labels(name).set(event_age(entry, now))
    for name in set(dead) - set(depths):
        metrics.dead_letters.labels(name).set(dead[name])


def event_age(entry: Any, now: float) -> float:
    """Seconds since the entry's event was received; 0 without one (or an unreadable one)."""
    if entry is None:
        return 0.0
    try:
        received = datetime.fromisoformat(Event.from_json(entry.body).received_at)
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, now - received.timestamp())
