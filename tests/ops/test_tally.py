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


def test_tallies_flushed_into_prometheus_client_objects_show_the_same() -> None:
    """Under --workers the tallies are flushed (in several rounds, as once a second) into
    file-backed prometheus_client objects: a scrape of the files shows what direct updates
    would have."""
    def with_client(registry: CollectorRegistry) -> None:
        counter = Counter("c_events", "Events.", ["source"], registry=registry)
        histogram = Histogram("h_seconds", "Time.", ["route"], buckets=BUCKETS, registry=registry)
        counter.labels("beacon").inc(5)
        for value in OBSERVED * 2:
            histogram.labels("/beacon").observe(value)

    def flushed(registry: CollectorRegistry) -> None:
        tallies = Tallies()
        counter = tallies.counter("c_events", "Events.", ["source"])
        histogram = tallies.histogram("h_seconds", "Time.", ["route"], BUCKETS)
        to_counter = Counter("c_events", "Events.", ["source"], registry=registry)
        to_histogram = Histogram("h_seconds", "Time.", ["route"], buckets=BUCKETS,
                                 registry=registry)
        for round_ in range(3):  # counts between flushes, and a flush with nothing new
            if round_ < 2:
                counter.labels("beacon").inc(3 if round_ == 0 else 2)
                for value in OBSERVED:
                    histogram.labels("/beacon").observe(value)
            counter.flush_to(to_counter)
            histogram.flush_to(to_histogram)

    assert _scrape(flushed) == _scrape(with_client)


def test_a_series_with_the_wrong_labels_is_refused() -> None:
    tallies = Tallies()
    with pytest.raises(ValueError, match="takes labels"):
        tallies.counter("c", "C.", ["source"]).labels("a", "b")
    with pytest.raises(ValueError, match="increasing"):
        tallies.histogram("h", "H.", ["route"], [1, 0.5])
