"""A local stand-in for Segment's HTTP Tracking API, ``POST /v1/batch``.

HTTP Basic auth with the write key as user name (401 otherwise — Segment itself answers 200 and
drops the data; compatible collectors such as RudderStack answer 401); ``{"batch": [...]}`` of
at most ``max_body`` (500 KB) with every message under ``max_message`` (32 KB), else ``400``, as
for bad JSON. ``track`` messages need ``event`` and ``userId`` or ``anonymousId``. ``200
{"success": true}`` otherwise. Messages are kept by ``messageId``, Segment's dedup key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web
from fake_vendor import Captured, FakeVendor, basic_auth

WRITE_KEY = "seg_write_key_42"


@dataclass
class FakeSegment(FakeVendor):
    max_body: int = 500_000
    max_message: int = 32_000

    def too_large(self, request: Captured) -> web.StreamResponse:
        return web.json_response({"success": False, "message": "batch too large"}, status=400)

    async def handle(self, request: Captured) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/v1/batch":
            return web.json_response({"success": False}, status=404)
        if basic_auth(request) != (WRITE_KEY, ""):
            return web.json_response({"success": False, "message": "invalid write key"}, status=401)
        batch = request.body.get("batch") if isinstance(request.body, dict) else None
        if not isinstance(batch, list):
            return web.json_response({"success": False, "message": "invalid JSON"}, status=400)
        for message in batch:
            if len(json.dumps(message, separators=(",", ":"))) > self.max_message:
                return web.json_response(
                    {"success": False, "message": "message too large"}, status=400
                )
        for message in batch:
            valid = (
                message.get("type") == "track"
                and message.get("event")
                and (message.get("userId") or message.get("anonymousId"))
            )
            if valid:  # Segment answers 200 for the others too, and drops them
                self.accept(message.get("messageId") or repr(message), message)
        return web.json_response({"success": True})
