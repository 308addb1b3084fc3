"""A local stand-in for PostHog's capture API: ``/batch/`` and capture v1.

``/batch/``: ``{"api_key", "batch": [...]}`` (gzip allowed), 401 for a wrong key, 400 for a
malformed body or an event without ``event`` / ``distinct_id``, 413 over ``max_body``, else
``200 {"status": 1}``. ``/i/v1/analytics/events``: Bearer auth and the ``PostHog-*`` headers
checked as posthog-python's capture v1 sends them, ``{"created_at", "batch"}`` without api_key or
sent_at, strict UTC timestamps; answers ``{"results": {uuid: {"result": ...}}}`` with the verdicts
a test put in ``v1_verdicts`` (default ``ok``). Events are kept by uuid, PostHog's dedup key.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from fake_vendor import Captured, FakeVendor

API_KEY = "phc_test_project_key"
_UTC_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


def _error(status: int, kind: str, code: str) -> web.Response:
    return web.json_response(
        {"type": kind, "code": code, "detail": code.replace("_", " ")}, status=status
    )


@dataclass
class FakePostHog(FakeVendor):
    api_key: str = API_KEY
    max_body: int = 20 * 1024 * 1024
    # uuid → verdicts answered by v1, one per request that carries it ("ok" once exhausted)
    v1_verdicts: dict[str, list[str]] = field(default_factory=dict)

    async def handle(self, request: Captured) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/batch/":
            return self._batch(request)
        if request.method == "POST" and request.path == "/i/v1/analytics/events":
            return self._v1(request)
        return web.json_response({"detail": "not found"}, status=404)

    def too_large(self, request: Captured) -> web.StreamResponse:
        return _error(413, "invalid_request", "payload_too_large")

    def _batch(self, request: Captured) -> web.Response:
        body = request.body
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "invalid_payload")
        if body.get("api_key") != self.api_key:
            return _error(401, "authentication_error", "invalid_api_key")
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            return _error(400, "invalid_request", "empty_batch")
        for event in batch:
            if (
                not isinstance(event, dict)
                or not event.get("event")
                or not event.get("distinct_id")
            ):
                return _error(400, "invalid_request", "invalid_event")
        for event in batch:
            self.accept(event.get("uuid") or str(uuid.uuid4()), event)
        return web.json_response({"status": 1})

    def _v1(self, request: Captured) -> web.Response:
        problem = v1_problem(request, self.api_key)
        if problem is not None:
            status, code = problem
            return web.json_response({"error": code, "error_description": code}, status=status)
        results: dict[str, Any] = {}
        for event in request.body["batch"]:
            queue = self.v1_verdicts.get(event["uuid"], [])
            verdict = queue.pop(0) if queue else "ok"
            results[event["uuid"]] = {"result": verdict}
            if verdict == "drop":
                results[event["uuid"]]["details"] = "billing_limit_exceeded"
            if verdict in ("ok", "warning"):
                self.accept(event["uuid"], event)
        return web.json_response({"results": results})


def v1_problem(request: Captured, api_key: str) -> tuple[int, str] | None:
    """Why a capture v1 request breaks the protocol, as (status, error), or None."""
    headers = request.headers
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() != api_key:
        return 401, "invalid_token"
    if not headers.get("Content-Type", "").startswith("application/json"):
        return 415, "content_type"
    if not re.match(r"^[^/\s]+/[^/\s]+", headers.get("PostHog-Sdk-Info", "")):
        return 400, "sdk_info"
    if not headers.get("PostHog-Attempt", "").isdigit() or not headers.get("User-Agent"):
        return 400, "attempt"
    try:
        uuid.UUID(headers.get("PostHog-Request-Id", ""))
    except ValueError:
        return 400, "request_id"
    if not _utc(headers.get("PostHog-Request-Timestamp")):
        return 400, "request_timestamp"
    body = request.body
    if not isinstance(body, dict) or not _utc(body.get("created_at")):
        return 400, "created_at"
    if {"api_key", "token", "sent_at"} & set(body):
        return 400, "legacy_field"
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        return 400, "empty_batch"
    for event in batch:
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            return 400, "event"
        if not isinstance(event.get("distinct_id"), str) or not event["distinct_id"]:
            return 400, "distinct_id"
        if not isinstance(event.get("properties"), dict):
            return 400, "properties"
        if not isinstance(event.get("options", {}), dict):
            return 400, "options"
        if not _utc(event.get("timestamp")):
            return 400, "timestamp"
        try:
            uuid.UUID(event.get("uuid") or "")
        except ValueError:
            return 400, "uuid"
    return None


def _utc(value: Any) -> bool:
    if not isinstance(value, str) or not _UTC_STAMP.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
