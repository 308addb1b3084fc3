"""The shipped configs' own tests pass: config/router.yaml and every file in config/examples/."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.configtest.command import load_suites
from router.configtest.runner import run

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = (REPO / "config" / "examples").glob("*.y*ml")
CONFIGS = [REPO / "config" / "router.yaml", *sorted(p for p in EXAMPLES if ".tests." not in p.name)]


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_has_tests_and_they_pass(config, monkeypatch):
    monkeypatch.chdir(REPO)  # the configs name their schema file relative to the repository
    relative = str(config.relative_to(REPO))

    suites = load_suites(relative)
    report = run(relative, suites)

    assert sum(len(s.cases) for s in suites) >= 2, f"{relative} ships without tests"
    assert report.ok, report.render()


def test_the_shipped_tests_cover_the_default_and_every_example():
    names = {p.name for p in CONFIGS}
    assert {
        "router.yaml",
        "posthog.yaml",
        "mixpanel.yaml",
        "amplitude.yaml",
        "segment.yaml",
        "posthog-and-store.yaml",
    } <= names
