"""Ingest's per-request metrics as plain numbers, turned into Prometheus samples at scrape time.

prometheus_client takes a lock and builds its value objects' updates on every ``inc()`` and
walks the buckets on every ``observe()``: the two counters and the latency histogram of one
single beacon cost ~27k instructions (bench/README.md). The counters and the histogram here are
``+=`` on ints and floats; :class:`Tallies` is a collector on the metrics registry that reads
them when ``/metrics`` is scraped, in the text format a ``Counter`` / ``Histogram`` would give.

Only for the event loop's thread (there is no lock): updated from two threads at once a tally
could lose a count. Delivery's metrics, updated from worker threads, stay prometheus_client's.

Under ``serve --workers`` (prometheus_client's multiprocess mode) a scrape reads every process's
metric files, not this process's objects: ``flush_to`` copies what was counted since the last
flush into a file-backed ``Counter`` / ``Histogram``, once a second and before this process
answers a scrape (router/metrics.py). A file write per request instead (``inc()`` on a
file-backed value) costs ~40k instructions per beacon (bench/README.md, round three).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class CounterTally:
    """One labelled series of a counter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class HistogramTally:
    """One labelled series of a histogram: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds  # ends with +Inf, so every value has a bucket
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Bucket i holds bounds[i-1] < value <= bounds[i] (``le``): bisect_left finds that i.
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class CounterFamily:
    """A counter with labels whose series are :class:`CounterTally`; ``labels()`` as in
    prometheus_client (callers look a series up once and keep it)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._series: dict[tuple[str, ...], CounterTally] = {}
        self._flushed: dict[tuple[str, ...], float] = {}  # per series, its value at the last flush

    def labels(self, *values: str) -> CounterTally:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            series = self._series[values] = CounterTally()
        return series

    def flush_to(self, counter: Any) -> None:
        """Add what each series counted since the last flush to ``counter`` (a prometheus_client
        ``Counter`` with the same labels)."""
        for values, series in list(self._series.items()):
            delta = series.value - self._flushed.get(values, 0)
            if delta:
                counter.labels(*values).inc(delta)
                self._flushed[values] = series.value

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            family.add_metric(values, series.value)
        return family


class HistogramFamily:
    """A histogram with labels whose series are :class:`HistogramTally`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._bounds = [float(b) for b in buckets]
        if self._bounds != sorted(self._bounds):
            raise ValueError(f"{name}: buckets must be in increasing order")
        if not self._bounds or self._bounds[-1] != float("inf"):
            self._bounds.append(float("inf"))
        self._series: dict[tuple[str, ...], HistogramTally] = {}
        self._flushed: dict[tuple[str, ...], tuple[list[int], float]] = {}

    def labels(self, *values: str) -> HistogramTally:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            series = self._series[values] = HistogramTally(self._bounds)
        return series

    def flush_to(self, histogram: Any) -> None:
        """Add what each series observed since the last flush to ``histogram`` (a
        prometheus_client ``Histogram`` with the same labels and buckets). It has no call to
        add many observations at once: its per-bucket values (``_buckets``, not cumulative,
        the same bucketing as :class:`HistogramTally`) and ``_sum`` are added to directly."""
        for values, series in list(self._series.items()):
            counts, total = list(series.counts), series.sum
            before, before_sum = self._flushed.get(values, ([0] * len(counts), 0.0))
            if counts == before:
                continue
            child = histogram.labels(*values)
            for bucket, now, then in zip(child._buckets, counts, before, strict=True):
                if now != then:
                    bucket.inc(now - then)
            child._sum.inc(total - before_sum)
            self._flushed[values] = (counts, total)

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(self._bounds, list(series.counts), strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), float(cumulative)))
            family.add_metric(values, buckets, series.sum)
        return family


class Tallies(Collector):
    """The families above, as one collector to register on a ``CollectorRegistry``."""

    def __init__(self) -> None:
        self._families: list[CounterFamily | HistogramFamily] = []

    def counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> CounterFamily:
        family = CounterFamily(name, documentation, labelnames)
        self._families.append(family)
        return family

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str],
                  buckets: Sequence[float]) -> HistogramFamily:
        family = HistogramFamily(name, documentation, labelnames, buckets)
        self._families.append(family)
        return family

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.collect()
