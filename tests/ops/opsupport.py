"""Helpers for the operations tests: a loopback webhook receiver, metrics, polling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from support import until

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
HASH_KEY = "a-test-hash-key-of-32-characters!"


@dataclass
class Receiver:
    """A webhook endpoint on loopback: answers ``status`` and records each event it took."""

    status: int = 200
    events: list[dict] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts += 1
        self.arrived.set()
        if self.status < 300:
            self.events.extend(body["events"])
        return web.json_response({"ok": self.status < 300}, status=self.status)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        await until(predicate, timeout)


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text, or None when there is no such sample."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def scrape(client) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


def file_events(path: Path) -> list[dict]:
    """The events a ``type: file`` backend wrote so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]




def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
