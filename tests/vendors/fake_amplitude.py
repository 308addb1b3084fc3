"""A local stand-in for Amplitude's HTTP V2 API, ``POST /2/httpapi``.

``{"api_key", "events", "options"?}``: 400 ``missing_field`` without an api key, 400 for a wrong
one; 413 over 1 MB or 2000 events. Each event needs ``event_type``, a ``user_id`` or
``device_id`` of at least ``options.min_id_length`` characters (5 by default) and an integer
``time``; any bad event rejects the whole request with a 400 naming it
(``events_with_invalid_fields`` / ``events_with_missing_fields`` /
``events_with_invalid_id_lengths``: field → indexes), and nothing is ingested. ``silenced`` ids
are answered in ``silenced_events``. Events are kept by ``insert_id``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from fake_vendor import Captured, FakeVendor

API_KEY = "amp_api_key_abcdef"


@dataclass
class FakeAmplitude(FakeVendor):
    max_body: int = 1_000_000
    max_events: int = 2000
    silenced: set[str] = field(default_factory=set)  # device ids Amplitude silences

    def too_large(self, request: Captured) -> web.StreamResponse:
        return web.json_response({"code": 413, "error": "Payload too large"}, status=413)

    async def handle(self, request: Captured) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/2/httpapi":
            return web.json_response({"code": 404, "error": "not found"}, status=404)
        body = request.body
        if not isinstance(body, dict) or "api_key" not in body:
            return _bad({"error": "Request missing required field", "missing_field": "api_key"})
        if body["api_key"] != API_KEY:
            return _bad({"error": "Invalid API key"})
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return _bad({"error": "Request missing required field", "missing_field": "events"})
        if len(events) > self.max_events:
            return self.too_large(request)
        min_length = (body.get("options") or {}).get("min_id_length", 5)
        invalid: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        short: dict[str, list[int]] = {}
        silenced: list[int] = []
        for i, event in enumerate(events):
            if not event.get("event_type"):
                missing.setdefault("event_type", []).append(i)
            ids = {k: event[k] for k in ("user_id", "device_id") if event.get(k) is not None}
            if not ids:
                missing.setdefault("device_id", []).append(i)
            for key, value in ids.items():
                if not isinstance(value, str) or len(value) < min_length:
                    short.setdefault(key, []).append(i)
            if "time" in event and not isinstance(event["time"], int):
                invalid.setdefault("time", []).append(i)
            if event.get("device_id") in self.silenced:
                silenced.append(i)
        if invalid or missing or short or silenced:
            return _bad(
                {
                    "error": "Invalid field values on some events",
                    "events_with_invalid_fields": invalid,
                    "events_with_missing_fields": missing,
                    "events_with_invalid_id_lengths": short,
                    "silenced_events": silenced,
                }
            )
        for event in events:
            self.accept(event.get("insert_id") or repr(event), event)
        return web.json_response(
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": request.size,
                "server_upload_time": int(time.time() * 1000),
            }
        )


def _bad(answer: dict[str, Any]) -> web.Response:
    return web.json_response({"code": 400, **answer}, status=400)
