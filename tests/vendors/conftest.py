"""Fixtures for the vendor backend tests: beacons as the pipeline leaves them, and a way to start
a fake vendor on 127.0.0.1 and build a backend from YAML pointing at it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from router.backends.base import Backend
from router.config.loader import loads
from router.event import Event

MakeBeacons = Callable[..., list[Event]]


def beacon(i: int = 0, **extra: Any) -> Event:
    """A native beacon after the privacy pipeline: hashed id, bucketed counts."""
    data: dict[str, Any] = {
        "installation_id": hashlib.sha256(f"installation-{i}".encode()).hexdigest(),
        "version": f"1.4.{i}",
        "platform": {"os": "linux", "architecture": "x86_64"},
        "deployment_type": "docker",
        "counts": {"users": "11-50"},
        "timestamp": "2026-11-28T00:00:03Z",
    }
    data.update(extra)
    return Event.new(data, received_at="2026-11-28T00:00:04.250Z")


@pytest.fixture
def beacons() -> MakeBeacons:
    """``beacons(n, **extra)``: n beacons of n installations."""
    return lambda n, **extra: [beacon(i, **extra) for i in range(n)]


@pytest.fixture
async def build() -> AsyncIterator[Callable[[str], Backend]]:
    """Build the backend of a one-backend YAML snippet, validated as `beacon-router` would;
    every backend built is closed after the test."""
    built: list[Backend] = []

    def make(yaml_text: str) -> Backend:
        config = loads(yaml_text)
        (spec,) = config.backends.values()
        backend = spec.build()
        built.append(backend)
        return backend

    yield make
    for backend in built:
        await backend.aclose()


@pytest.fixture
async def serve(aiohttp_server) -> AsyncIterator[Callable[[Any], Any]]:
    """``await serve(fake)`` → the base URL of ``fake.app()`` on 127.0.0.1."""

    async def start(fake: Any) -> str:
        server = await aiohttp_server(fake.app(), host="127.0.0.1")
        return str(server.make_url("")).rstrip("/")

    yield start


