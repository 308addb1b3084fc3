"""``POST /beacon`` and every path a source profile serves (router/sources, docs/sources.md).

The handler stays thin: decode the body, find each beacon's profile (path, method, User-Agent,
shape), let the profile map it onto the common fields, run the global pipeline, make the
survivors durable, and only then answer as the profile says (Operately's client takes only 200).
The event's uuid is the beacon's own field only where the profile names a true event id: a
product's installation id (GitLab's ``uuid``) is never an event's identity.
"""

from __future__ import annotations

from functools import lru_cache
from time import perf_counter
from typing import Any

import orjson
from aiohttp import hdrs, web

from .. import auth
from ..errors import BadRequest, Unauthorized
from ..event import Event, get_path, now_iso
from ..filters import Pipeline
from ..ingest import decode_beacons, read_body
from ..ingest.form import decode as decode_form
from ..metrics import Metrics
from ..sources import FALLBACK, Profile, RequestFacts, Resolution
from .intake import make_durable, request_context
from .responses import json_bytes_response
from .state import ROUTER, Router

SOURCE = "beacon"
_NO_PIPELINE = Pipeline()  # a profile with `pipeline: false` (an explicit privacy opt-out)


def add_profile_routes(app: web.Application) -> None:
    """Serve /beacon and each profile's paths with the methods its clients use."""
    router = app[ROUTER]
    for path, methods in router.config.profiles.routes().items():
        handler = BeaconRoute(router, path).receive
        for method in sorted(methods):
            app.router.add_route(method, path, handler)


class BeaconRoute:
    """One path's handler, holding what every request on it would otherwise look up again:
    the router, the route's name and its metric series."""

    def __init__(self, router: Router, route: str) -> None:
        self.router, self.route = router, route
        self._metrics: Metrics | None = None
        self._received: Any = None
        self._accepted: Any = None
        self._latency: Any = None

    def _series(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._received = metrics.child(metrics.received, SOURCE)
        self._accepted = metrics.child(metrics.accepted, SOURCE)
        self._latency = metrics.child(metrics.request_latency, self.route)

    async def receive(self, request: web.Request) -> web.Response:
        """Decode, map by profile, run the pipeline, make durable, then answer as the profile
        says."""
        router, route = self.router, self.route
        if router.metrics is not self._metrics:  # the first request
            self._series(router.metrics)
        started = perf_counter()
        headers = request.headers
        method = request.method
        found: list[Resolution] = []
        try:
            tokens = router.config.sources.beacon.tokens
            if tokens and not auth.matches(auth.bearer(headers.get(hdrs.AUTHORIZATION)),
                                           tokens):
                raise Unauthorized("a source token is required: Authorization: Bearer TOKEN")
            if method == "GET":  # a client that reports in its query string
                beacons = decode_form(request.query_string.encode(), router.limits)
            else:
                body = await read_body(request, router.limits)
                beacons = decode_beacons(body, headers.get(hdrs.CONTENT_TYPE), router.limits)
            self._received.inc(len(beacons))
            profiles = router.config.profiles
            agent = headers.get(hdrs.USER_AGENT)
            facts = RequestFacts(headers=headers, path_params=request.match_info)
            ids = []
            for beacon in beacons:  # each beacon's id is read before its mapping moves fields
                resolution = profiles.resolve(route, method, agent, beacon)
                found.append(resolution)
                ids.append(resolution.profile.event_uuid(beacon))
                resolution.profile.map(beacon, facts)
            await _rate_limit(router, beacons)
            pipeline = _pipeline(found, router.pipeline)
            # The request context is for filters only: none to run, none to build.
            context = request_context(request, router, agent=agent) if len(pipeline) else None
            received_at = now_iso()
            await make_durable(router, SOURCE, [
                Event.new(b, uuid=i, received_at=received_at, context=context,
                          profile=r.profile.name)
                for b, i, r in zip(beacons, ids, found, strict=True)], pipeline=pipeline,
                accepted=self._accepted)
        finally:
            self._latency.observe(perf_counter() - started)
        status, answer = _answer(found[0].profile if found else FALLBACK, len(beacons))
        if isinstance(answer, str):
            return web.Response(text=answer, status=status)
        return json_bytes_response(answer, status=status)


@lru_cache(maxsize=256)
def _answer(profile: Profile, accepted: int) -> tuple[int, str | bytes]:
    """The profile's answer, JSON serialised once per count (a few counts recur: mostly 1)."""
    status, body = profile.answer(accepted)
    return status, body if isinstance(body, str) else orjson.dumps(body)


async def _rate_limit(router: Router, beacons: list[dict[str, object]]) -> None:
    """Per-installation limits, keyed on the mapped id before the pipeline hashes it."""
    limits = router.rate_limits
    if not (limits.shared or limits.per_installation is not None):
        return
    field_name = router.config.limits.installation_field
    ids = (get_path(b, field_name) for b in beacons)
    if limits.shared:
        await limits.check_installations_shared(ids)
    else:
        limits.check_installations(ids)


def _pipeline(found: list[Resolution], pipeline: Pipeline) -> Pipeline:
    """``pipeline`` (the global one), or none at all when the profiles opted out of it."""
    keeps = found[0].profile.pipeline
    for resolution in found:
        if resolution.profile.pipeline != keeps:
            raise BadRequest("the beacons of this request belong to profiles that differ on "
                             "`pipeline:`; send them in separate requests")
    return pipeline if keeps else _NO_PIPELINE


class PostHogProfile:
    """The ``source: posthog`` profile, as the PostHog capture handlers apply it (or nothing)."""

    def __init__(self, router: Router, request: web.Request) -> None:
        self.profile = router.config.profiles.posthog
        self.name = self.profile.name if self.profile is not None else None
        self._facts = RequestFacts(headers=request.headers)
        opted_out = self.profile is not None and not self.profile.pipeline
        self.pipeline = _NO_PIPELINE if opted_out else None

    def map(self, data: dict[str, Any]) -> dict[str, Any]:
        return data if self.profile is None else self.profile.map(data, self._facts)
