"""A local stand-in for Mixpanel's Import API, ``POST /import?strict=1``.

HTTP Basic auth with the project token as user name, or a service account with ``project_id`` in
the query (401 otherwise); a JSON array of at most 2000 events and 10 MB (413 beyond); with
``strict=1`` each event is validated (name, ``time`` in ms or s since 1971,
``distinct_id`` not a placeholder, ``$insert_id`` of at most 36 ``[A-Za-z0-9-]``, under 1 MB):
a batch with invalid events is answered ``400`` with ``failed_records`` and its valid events
are imported anyway. Events are kept by ``$insert_id``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from fake_vendor import Captured, FakeVendor, basic_auth

TOKEN = "mp_project_token_0123"
SERVICE_ACCOUNT = ("beacon-router.sa", "sa-secret-9876")
PROJECT_ID = "3141592"
_INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
# Placeholder ids Mixpanel refuses (a subset of its documented list).
_BAD_IDS = {
    "",
    "anon",
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "undefined",
    "0",
    "-1",
    "00000000-0000-0000-0000-000000000000",
}


@dataclass
class FakeMixpanel(FakeVendor):
    max_body: int = 10_000_000
    max_events: int = 2000

    async def handle(self, request: Captured) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/import":
            return _answer(404, "not found")
        credentials = basic_auth(request)
        token_auth = credentials == (TOKEN, "")
        account_auth = (
            credentials == SERVICE_ACCOUNT and request.query.get("project_id") == PROJECT_ID
        )
        if not (token_auth or account_auth):
            return _answer(401, "Invalid credentials")
        events = request.body
        if not isinstance(events, list) or not events:
            return _answer(400, "request body must be a JSON array of events")
        if len(events) > self.max_events:
            return _answer(413, "too many events")
        failed = []
        for index, event in enumerate(events):
            problem = _problem(event)
            if problem is not None:
                field, message = problem
                insert_id = (
                    event.get("properties", {}).get("$insert_id")
                    if isinstance(event, dict)
                    else None
                )
                failed.append(
                    {"index": index, "$insert_id": insert_id, "field": field, "message": message}
                )
        bad = {record["index"] for record in failed}
        for index, event in enumerate(events):
            if index not in bad:
                self.accept(event["properties"]["$insert_id"], event)
        if failed and request.query.get("strict") == "1":
            return web.json_response(
                {
                    "code": 400,
                    "error": "some data points in the request failed validation",
                    "failed_records": failed,
                    "num_records_imported": len(events) - len(failed),
                    "status": "Bad Request",
                },
                status=400,
            )
        return web.json_response(
            {"code": 200, "num_records_imported": len(events) - len(failed), "status": "OK"}
        )


def _answer(status: int, error: str) -> web.Response:
    return web.json_response({"code": status, "error": error, "status": "error"}, status=status)


def _problem(event: Any) -> tuple[str, str] | None:
    if not isinstance(event, dict) or not isinstance(event.get("properties"), dict):
        return "properties", "'properties' must be an object"
    if not isinstance(event.get("event"), str) or not event["event"]:
        return "event", "'event' must be a non-empty string"
    properties = event["properties"]
    moment = properties.get("time")
    if not isinstance(moment, int | float) or isinstance(moment, bool):
        return "properties.time", "'properties.time' must be seconds or milliseconds since epoch"
    seconds = moment / 1000 if moment > 1e11 else moment
    # Mixpanel also refuses times over an hour ahead; not checked, so fixed test dates work.
    if seconds < 31536000:
        return "properties.time", "'properties.time' is out of range"
    distinct_id = properties.get("distinct_id")
    if not isinstance(distinct_id, str) or distinct_id.strip().lower() in _BAD_IDS:
        return "properties.distinct_id", "'properties.distinct_id' is invalid"
    if not isinstance(properties.get("$insert_id"), str) or not _INSERT_ID.match(
        properties["$insert_id"]
    ):
        return "properties.$insert_id", "'properties.$insert_id' is invalid"
    if len(json.dumps(event)) >= 1_000_000:
        return "event", "event is over 1 MB"
    return None
