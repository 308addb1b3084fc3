"""``POST /beacon``: decode, run the global pipeline, make the survivors durable, then answer."""

from __future__ import annotations

import time

from aiohttp import web

from .. import auth
from ..errors import Unauthorized
from ..event import Event, get_path, now_iso
from ..ingest import decode_beacons, read_body
from .intake import make_durable, request_context
from .responses import json_response
from .state import ROUTER


async def post_beacon(request: web.Request) -> web.Response:
    """Decode, run the global pipeline, make the survivors durable, then (only then) 202."""
    router = request.app[ROUTER]
    started = time.perf_counter()
    try:
        tokens = router.config.sources.beacon.tokens
        if tokens and not auth.matches(auth.bearer(request.headers.get("Authorization")), tokens):
            raise Unauthorized("a source token is required: Authorization: Bearer TOKEN")
        body = await read_body(request, router.limits)
        beacons = decode_beacons(body, request.headers.get("Content-Type"), router.limits)
        metrics = router.metrics
        metrics.child(metrics.received, "beacon").inc(len(beacons))
        # Keyed on the raw id, before the pipeline hashes it; only a salted digest is kept.
        limits = router.rate_limits
        if limits.shared or limits.per_installation is not None:
            field_name = router.config.limits.installation_field
            ids = (get_path(b, field_name) for b in beacons)
            if limits.shared:
                await limits.check_installations_shared(ids)
            else:
                limits.check_installations(ids)
        context = request_context(request)
        received_at = now_iso()
        await make_durable(router, "beacon", (
            Event.new(b, uuid=b.get("uuid"), received_at=received_at, context=context)
            for b in beacons))
    finally:
        router.metrics.child(router.metrics.request_latency, "/beacon").observe(
            time.perf_counter() - started)
    return json_response({"accepted": len(beacons)}, status=202)
