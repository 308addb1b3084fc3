"""Fixtures for the PostHog capture API tests: a router on 127.0.0.1 delivering to a MockBackend."""

from __future__ import annotations

import pytest
from capture_support import Running, StartRouter

from router.config.loader import loads
from router.testing import MockBackend
from router.web.app import ROUTER, create_app


@pytest.fixture
def start_router(aiohttp_client, tmp_path) -> StartRouter:
    """``await start_router(posthog="{tokens: [...]}", pipeline="[...]")`` → a Running router.

    Each argument is the YAML of its section; ``backends=False`` leaves the events in the spool.
    """

    async def start(
        posthog: str = "{}", pipeline: str = "[]", backends: bool = True, server: str = "{}"
    ) -> Running:
        text = (
            f"server: {server}\n"
            f"spool: {{path: {tmp_path / 'spool.db'}}}\n"
            f"sources: {{posthog: {posthog}}}\n"
            f"pipeline: {pipeline}\n"
        )
        if backends:
            text += (
                "backends:\n"
                "  mock: {type: router.testing:MockBackend, batch: {max_events: 1000, "
                "max_wait: 10ms}}\n"
            )
        client = await aiohttp_client(create_app(loads(text)))
        delivery = client.app[ROUTER].delivery
        backend = delivery.workers["mock"].backend if backends and delivery else MockBackend()
        return Running(client, backend)

    return start
