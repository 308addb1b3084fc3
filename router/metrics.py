"""Prometheus metrics, one registry per app (so several apps in one test process don't clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the router exports; names follow ``beacon_router_<what>_<unit>``."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        p = "beacon_router_"
        self.received = Counter(p + "events_received", "Events decoded from requests.",
                                ["source"], registry=r)
        self.accepted = Counter(p + "events_accepted", "Events written durably to the spool.",
                                ["source"], registry=r)
        self.rejected = Counter(p + "requests_rejected", "Requests answered with an error.",
                                ["source", "reason"], registry=r)
        self.dropped = Counter(p + "events_dropped", "Events dropped by a filter.",
                               ["stage", "filter", "reason"], registry=r)
        self.delivered = Counter(p + "events_delivered", "Events a backend accepted.",
                                 ["backend"], registry=r)
        self.failed = Counter(p + "delivery_failures", "Failed send attempts (batches).",
                              ["backend", "kind"], registry=r)
        self.retried = Counter(p + "events_retried", "Events scheduled for another attempt.",
                               ["backend"], registry=r)
        self.dead_lettered = Counter(p + "events_dead_lettered", "Events moved to the DLQ.",
                                     ["backend"], registry=r)
        self.spool_depth = Gauge(p + "spool_depth_events", "Events a backend has not acked.",
                                 ["backend"], registry=r)
        self.spool_bytes = Gauge(p + "spool_used_bytes", "Bytes in use in the spool.",
                                 registry=r)
        self.backend_up = Gauge(p + "backend_healthy", "1 if the last send succeeded.",
                                ["backend"], registry=r)
        self.batch_size = Histogram(p + "batch_size_events", "Events per batch sent.",
                                    ["backend"], buckets=_BATCH_BUCKETS, registry=r)
        self.send_latency = Histogram(p + "send_duration_seconds", "Time of one send.",
                                      ["backend"], buckets=_LATENCY_BUCKETS, registry=r)
        self.request_latency = Histogram(p + "request_duration_seconds", "Ingest request time.",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
