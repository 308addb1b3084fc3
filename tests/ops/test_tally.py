"""router.tally: ingest's counters and latency histogram read at scrape time exactly as
prometheus_client's own Counter and Histogram would show the same updates."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from router.tally import Tallies

BUCKETS = (0.001, 0.01, 0.1, 1)
OBSERVED = [0.0, 0.0005, 0.001, 0.001000001, 0.05, 0.1, 0.7, 1.0, 3.0, 1e9]


def _scrape(build) -> bytes:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    build(registry)
    return generate_latest(registry)


def test_tallies_render_as_prometheus_client_counters_and_histograms() -> None:
    def with_client(registry: CollectorRegistry) -> None:
        counter = Counter("c_events", "Events.", ["source"], registry=registry)
        counter.labels("beacon").inc(3)
        counter.labels("posthog").inc()
        histogram = Histogram("h_seconds", "Time.", ["route"], buckets=BUCKETS, registry=registry)
        for value in OBSERVED:
            histogram.labels("/beacon").observe(value)

    def with_tallies(registry: CollectorRegistry) -> None:
        tallies = Tallies()
        counter = tallies.counter("c_events", "Events.", ["source"])
        histogram = tallies.histogram("h_seconds", "Time.", ["route"], BUCKETS)
        registry.register(tallies)
        counter.labels("beacon").inc(3)
        counter.labels("posthog").inc()
        for value in OBSERVED:
            histogram.labels("/beacon").observe(value)

    assert _scrape(with_tallies) == _scrape(with_client)


def test_a_series_with_the_wrong_labels_is_refused() -> None:
    tallies = Tallies()
    with pytest.raises(ValueError, match="takes labels"):
        tallies.counter("c", "C.", ["source"]).labels("a", "b")
    with pytest.raises(ValueError, match="increasing"):
        tallies.histogram("h", "H.", ["route"], [1, 0.5])
