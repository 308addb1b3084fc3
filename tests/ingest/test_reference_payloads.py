"""The research document's payloads (tests/fixtures/reference) decode to the events they hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.event import get_path
from router.ingest import Limits, decode_beacons

REFERENCE = Path(__file__).parent.parent / "fixtures" / "reference"
CONTENT_TYPES: dict[str, str] = json.loads((REFERENCE / "index.json").read_text())

# file → (number of events, {dotted path in the first event: expected value})
EXPECTED: dict[str, tuple[int, dict[str, Any]]] = {
    "gitlab.json": (
        1,
        {
            "version": "13.12.0-ee",
            "edition": "EE",
            "active_user_count": 100,
            "counts.merge_requests": 500,
            "settings.ldap_enabled": True,
        },
    ),
    "docker.json": (
        1,
        {"version": "20.10.7", "platform": "linux", "usage_metrics.images_pulled_24h": 5},
    ),
    "kubernetes.yaml": (
        1,
        {
            "cluster_info.kubernetes_version": "1.21.0",
            "cluster_info.node_count": 5,
            "cluster_info.region": "us-west-2",
            "usage_metrics.workload_types.1": "statefulset",
        },
    ),
    "nextcloud.json": (
        1,
        {
            "version": "21.0.3",
            "database": "mysql",
            "user_count_range": "1-10",
            "apps_enabled.2": "contacts",
        },
    ),
    "prometheus.prom": (
        1,
        {
            "format": "prometheus",
            "metrics.prometheus_build_info.0.labels.version": "2.28.1",
            "metrics.prometheus_build_info.0.value": 1,
            "metrics.prometheus_config_last_reload_successful": 1,
            "metrics.prometheus_tsdb_symbol_table_size_bytes": 12345,
        },
    ),
    "plausible.json": (
        1,
        {
            "timestamp": "2024-01-01T12:00:00Z",
            "page_view.pathname": "/dashboard",
            "session.is_bounce": False,
        },
    ),
    "discourse.json": (
        1,
        {
            "discourse_version": "2.7.8",
            "statistics.users_count": 1000,
            "site_settings.login_required": False,
            "plugins.0": "discourse-chat",
        },
    ),
    "wordpress.form": (
        1,
        {
            "wp_version": "5.8.1",
            "php_version": "7.4.3",
            "multisite": "0",
            "users": "5",
            "plugins": "wordpress-seo,jetpack,contact-form-7",
            "themes": "twentytwentyone",
        },
    ),
    "mastodon.json": (
        1,
        {
            "software.name": "mastodon",
            "software.version": "3.4.1",
            "usage.users.activeMonth": 100,
            "metadata.nodeName": "Example Mastodon",
        },
    ),
    "operately.json": (
        1,
        {
            "version": "1.0.0",
            "platform.os": "linux",
            "deployment_type": "docker",
            "user_count_range": "11-50",
        },
    ),
    "operately_enhanced.json": (
        1,
        {
            "usage_metrics.features_enabled.0": "sso",
            "performance_metrics.avg_response_time_ms": 150,
        },
    ),
    "operately_batch.json": (
        2,
        {
            "installation_id": "5f0b6c1e-8a3d-4f27-9b4e-7c2d1a0e6f38",
            "platform.architecture": "x86_64",
        },
    ),
    "operately_sendbeacon.txt": (1, {"deployment_type": "source", "platform.os": "linux"}),
}


def test_every_fixture_file_is_listed_and_checked() -> None:
    files = {p.name for p in REFERENCE.iterdir()} - {"index.json", "README.md"}
    assert files == set(CONTENT_TYPES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_payload_decodes_to_structured_events(name: str) -> None:
    count, fields = EXPECTED[name]
    events = decode_beacons((REFERENCE / name).read_bytes(), CONTENT_TYPES[name], Limits())
    assert len(events) == count
    assert all(type(event) is dict for event in events)
    for path, value in fields.items():
        assert get_path(events[0], path) == value, path
    orjson.dumps(events)  # what the spool will do with them
