"""Helpers for the PostHog capture API tests: a running router, and what an SDK sent vs. got."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from router.event import Event
from router.testing import MockBackend
from router.web.app import ROUTER

TOKEN = "phc_router_test_token"
_ROUTE_COUNT = re.compile(r'beacon_router_request_duration_seconds_count\{route="([^"]+)"\} (\S+)')


@dataclass
class Running:
    """A router serving on loopback: its client, its base URL and the backend it delivers to."""

    client: TestClient
    backend: MockBackend

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def delivered(self, count: int, timeout: float = 10.0) -> list[Event]:
        """The events the backend got, once there are ``count`` (AssertionError if never)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.backend.events) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.backend.events)} of {count} events delivered")
            self.backend.sent.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.backend.sent.wait(), 0.5)
        return self.backend.events

    def metric(self, name: str, *labels: str) -> float:
        metrics = self.client.app[ROUTER].metrics
        return metrics.value(getattr(metrics, name), *labels)


StartRouter = Callable[..., Awaitable[Running]]


def assert_delivered_as_sent(sent: list[dict[str, Any]], events: list[Event]) -> None:
    """Every message the SDK sent reached the backend once, uuid, distinct_id and all intact."""
    by_uuid = {event.uuid: event for event in events}
    assert len(by_uuid) == len(events), "an event was delivered twice"
    assert sorted(by_uuid) == sorted(m["uuid"] for m in sent)
    for message in sent:
        event = by_uuid[message["uuid"]]
        assert (event.source, event.name) == ("posthog", message["event"])
        assert event.data == expected_data(message)


def expected_data(message: dict[str, Any]) -> dict[str, Any]:
    """The router's event data for a message an SDK sent (see docs/posthog-ingest.md).

    Everything is kept as sent, except that ``$set`` / ``$set_once`` always sit on top (merged
    with any in properties, where SDKs also put them), and a distinct id is a string.
    """
    properties = dict(message.get("properties") or {})
    data: dict[str, Any] = {"distinct_id": str(message["distinct_id"]), "properties": properties}
    data["timestamp"] = message["timestamp"]
    for key in ("$set", "$set_once"):
        value = message.get(key)
        if isinstance(properties.get(key), dict):
            value = {**(value or {}), **properties.pop(key)}
        if value is not None:
            data[key] = value
    return data


def routes_used(metrics_text: str) -> set[str]:
    """The routes the router's request-duration histogram counted requests on."""
    return {route for route, count in _ROUTE_COUNT.findall(metrics_text) if float(count) > 0}
