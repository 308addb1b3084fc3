"""Shared fixtures (helpers live in support.py so any test module can import them)."""

from __future__ import annotations

import pytest
from support import RouterProcess, free_port


@pytest.fixture
def router_process(tmp_path):
    """Factory: ``router_process(config_text)`` writes the config and returns a RouterProcess."""
    made: list[RouterProcess] = []

    def make(config_text: str, port: int | None = None) -> RouterProcess:
        path = tmp_path / "router.yaml"
        path.write_text(config_text)
        proc = RouterProcess(str(path), port or free_port(), str(tmp_path))
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()
