"""One scrape under multiprocess mode while another process is creating its metric file."""

from __future__ import annotations

import struct

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from router.multiproc import _Collector


def test_a_metric_file_being_created_is_skipped_not_a_failed_scrape(tmp_path):
    written = MmapedDict(str(tmp_path / "counter_100.db"))
    key = mmap_key("beacon_router_events_delivered", "beacon_router_events_delivered_total",
                   ["backend"], ["hook"], "Events a backend accepted.")
    written.write_value(key, 7.0, 0.0)
    written.close()
    (tmp_path / "counter_200.db").touch()  # opened, not yet grown: what a reader may see

    registry = CollectorRegistry()
    _Collector(registry, path=str(tmp_path))
    samples = [s for m in registry.collect() for s in m.samples]
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("beacon_router_events_delivered_total", {"backend": "hook"}, 7.0)]

    plain = CollectorRegistry()  # prometheus-client's own collector fails the whole scrape
    MultiProcessCollector(plain, path=str(tmp_path))
    with pytest.raises(struct.error):
        list(plain.collect())
