"""What every local stand-in for a vendor shares: it records requests, reads gzip, answers scripted
failures first, and keeps what it accepted by dedup key (so a test sees double counting)."""

from __future__ import annotations

import base64
import gzip
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy


@dataclass
class Captured:
    """One request as the fake saw it (body decompressed)."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    raw: bytes
    body: Any  # parsed JSON, or None

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass
class Scripted:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class FakeVendor:
    """Base of the fakes: ``fail_next`` queues answers given before any processing."""

    max_body: int = 1 << 20
    url: str = ""  # set by the test once the fake is serving
    requests: list[Captured] = field(default_factory=list)
    accepted: dict[str, Any] = field(default_factory=dict)  # dedup key → event
    received_total: int = 0  # events accepted, duplicates included
    script: deque[Scripted] = field(default_factory=deque)

    def fail_next(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        for _ in range(times):
            self.script.append(Scripted(status, headers or {}, body))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._entry)
        return app

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        # aiohttp already inflates a `Content-Encoding: gzip` body (and fails the request if it
        # is not gzip); this covers a server built without that.
        raw = await request.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        captured = Captured(
            request.method, request.path, dict(request.query), request.headers.copy(), raw, body
        )
        self.requests.append(captured)
        if self.script:
            answer = self.script.popleft()
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        if len(raw) > self.max_body:
            return self.too_large(captured)
        return await self.handle(captured)

    # -- what each vendor implements

    async def handle(self, request: Captured) -> web.StreamResponse:
        raise NotImplementedError

    def too_large(self, request: Captured) -> web.StreamResponse:
        return web.json_response({"error": "payload too large"}, status=413)

    # -- helpers

    def accept(self, key: str, event: Any) -> None:
        self.accepted[key] = event
        self.received_total += 1


def basic_auth(request: Captured) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic Authorization header, or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return user, password
