"""Every file in config/examples/ loads, and its vendor backends render a beacon (dry-run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.loader import load
from router.event import Event

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "config" / "examples").glob("*.y*ml"))
# What the examples read from the environment, as ops would set it.
ENV = {
    "POSTHOG_API_KEY": "phc_example_project_key",
    "MIXPANEL_PROJECT_TOKEN": "mixpanel-example-token",
    "AMPLITUDE_API_KEY": "amplitude-example-key",
    "SEGMENT_WRITE_KEY": "segment-example-write-key",
    "BEACON_HASH_KEY": "an example key that is long enough for HMAC",
    "WEBHOOK_SECRET": "an example webhook secret",
}
VENDORS = {"posthog", "mixpanel", "amplitude", "segment"}


def test_the_vendor_examples_exist():
    names = {path.name for path in EXAMPLES}
    assert {
        "posthog.yaml",
        "mixpanel.yaml",
        "amplitude.yaml",
        "segment.yaml",
        "posthog-and-store.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_loads(path, monkeypatch):
    monkeypatch.chdir(REPO)  # examples name schema files relative to the repository

    config = load(str(path), env=ENV)

    assert config.backends


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
async def test_example_vendor_backends_render_a_beacon(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load(str(path), env=ENV)
    beacon = Event.new(
        {"installation_id": "5f2c" * 16, "version": "1.4.2", "timestamp": "2026-11-28T00:00:03Z"}
    )
    for spec in config.backends.values():
        if spec.type not in VENDORS:
            continue
        backend = spec.build()
        try:
            (request,) = backend.render([beacon])
        finally:
            await backend.aclose()
        assert request.method == "POST" and request.url.startswith("https://")
        rendered = repr(request)
        assert not any(secret in rendered for secret in ENV.values())  # dry-run shows no key
