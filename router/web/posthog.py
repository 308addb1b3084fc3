"""The PostHog capture API as a source: an app using a PostHog SDK sets its host to the router.

Handlers stay thin, as ``POST /beacon``'s do: :mod:`router.ingest.posthog` decodes, then the
project token is checked against ``sources.posthog.tokens``, each event runs through the global
pipeline, the survivors are made durable in the spool, and only then the answer goes out, in the
exact form PostHog's SDKs expect (posthog-python raises on any other 2xx body):

- capture v0 (``/batch/``, ``/capture/``, ``/e/``, ``/i/v0/e/``, ``/track/``, ``/engage/``):
  ``200 {"status": 1}``, or ``204`` when the query says ``beacon=1`` (``navigator.sendBeacon``);
- capture v1 (``/i/v1/analytics/events``): ``200 {"results": {"<uuid>": {"result": "ok"}}}``.

Every error is ``{"error", "detail"}`` JSON with a 4xx status. Browsers get CORS headers only
for origins listed in ``sources.posthog.cors_origins``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import hdrs, web

from ..config import PostHogSourceConfig
from ..errors import InputError, Unauthorized
from ..event import Event, iso_z, stamped
from ..ingest import read_body
from ..ingest.posthog import Captured, decode_v0, decode_v1
from .beacon import PostHogProfile
from .intake import make_durable, request_context
from .paths import SOURCE, V0_METHODS, V0_PATHS, V1_METHODS, V1_PATH
from .responses import error_response, json_response
from .state import ROUTER, Router

_ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization"
_PREFLIGHT_MAX_AGE = str(24 * 3600)

Work = Callable[[web.Request, Router, "PostHogSource"], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class PostHogSource:
    """``sources.posthog`` as the handlers use it: who may write, which origins may read."""

    tokens: frozenset[str]
    origins: frozenset[str]

    @classmethod
    def from_config(cls, config: PostHogSourceConfig) -> PostHogSource:
        return cls(frozenset(config.tokens), frozenset(config.cors_origins))

    def token(self, tokens: frozenset[str]) -> str | None:
        """The request's one project token, or None; Unauthorized if the allowlist refuses it."""
        if len(tokens) > 1:
            if self.tokens:
                raise Unauthorized(
                    "the events carry different project tokens; send one per request"
                )
            return None
        token = next(iter(tokens), None)
        if self.tokens and token is None:
            raise Unauthorized(
                "a project token is required: api_key or token in the body, or "
                "Authorization: Bearer <token>"
            )
        if self.tokens and token not in self.tokens:
            raise Unauthorized("unknown project token")  # never echoed: it may be a secret
        return token

    def cors_headers(self, request: web.Request, methods: str) -> dict[str, str]:
        """CORS headers for ``request``: the Origin echoed only when the allowlist has it."""
        if not self.origins:
            return {}
        headers: dict[str, str] = {hdrs.VARY: "Origin"}
        origin = request.headers.get(hdrs.ORIGIN)
        if not origin or not ("*" in self.origins or origin in self.origins):
            return headers
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"  # posthog-js may send cookies
        if request.method == "OPTIONS":
            asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
            headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = methods
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = asked[:1024] or _ALLOWED_HEADERS
            headers[hdrs.ACCESS_CONTROL_MAX_AGE] = _PREFLIGHT_MAX_AGE
        return headers


POSTHOG = web.AppKey("posthog_source", PostHogSource)


def add_posthog_routes(app: web.Application) -> None:
    """Serve PostHog's capture paths on a ``create_app`` app, unless ``sources.posthog`` is off."""
    config = app[ROUTER].config.sources.posthog
    if not config.enabled:
        return
    app[POSTHOG] = PostHogSource.from_config(config)
    for path in V0_PATHS:
        for variant in (path, path + "/"):
            for method in V0_METHODS:
                app.router.add_route(method, variant, capture_v0)
    for variant in (V1_PATH, V1_PATH + "/"):
        for method in V1_METHODS:
            app.router.add_route(method, variant, capture_v1)


async def capture_v0(request: web.Request) -> web.Response:
    """Capture v0: ``200 {"status": 1}`` (``204`` for ``beacon=1``) once the events are durable."""
    return await _answer(request, _capture_v0, _V0_ALLOWED)


async def capture_v1(request: web.Request) -> web.Response:
    """Capture v1: ``200 {"results": {uuid: {"result": "ok"}}}`` once the events are durable."""
    return await _answer(request, _capture_v1, _V1_ALLOWED)


_V0_ALLOWED, _V1_ALLOWED = ", ".join(V0_METHODS), ", ".join(V1_METHODS)  # Allow, CORS


async def _answer(request: web.Request, work: Work, allowed: str) -> web.Response:
    """Run ``work``, turning a client's mistake into its 4xx answer; CORS headers on either."""
    app = request.app
    router = app[ROUTER]
    source = app[POSTHOG]
    started = time.perf_counter()
    if request.method == "OPTIONS":
        response = web.Response(status=204, headers={hdrs.ALLOW: allowed})
    else:
        try:
            response = await work(request, router, source)
        except InputError as exc:
            router.metrics.rejected.labels(SOURCE, exc.error).inc()
            response = error_response(exc.status, exc.error, exc.detail, exc.retry_after)
    response.headers.update(source.cors_headers(request, allowed))
    route = request.match_info.route.resource
    metrics = router.metrics
    metrics.child(metrics.request_latency, route.canonical if route else "unmatched").observe(
        time.perf_counter() - started
    )
    return response


async def _capture_v0(request: web.Request, router: Router, source: PostHogSource) -> web.Response:
    body = await read_body(request, router.limits)
    now = datetime.now(UTC)
    capture = decode_v0(
        body,
        query=request.query,
        content_type=request.headers.get(hdrs.CONTENT_TYPE),
        engage=request.path.startswith("/engage"),
        now=now,
        limits=router.limits,
    )
    # The key may come in the body (what the SDKs do) or, as some hand-written clients send
    # it, in `Authorization: Bearer`; when both are there they must agree.
    bearer = _bearer(request.headers.get(hdrs.AUTHORIZATION), required=bool(source.tokens))
    if bearer is not None and capture.tokens and capture.tokens != {bearer}:
        raise Unauthorized("the Authorization header and the body name different project tokens")
    token = source.token(capture.tokens or (frozenset((bearer,)) if bearer else frozenset()))
    await _make_durable(request, router, capture.events, token, now)
    if request.query.get("beacon") == "1":
        return web.Response(status=204)
    return json_response({"status": 1})


async def _capture_v1(request: web.Request, router: Router, source: PostHogSource) -> web.Response:
    bearer = _bearer(request.headers.get(hdrs.AUTHORIZATION), required=bool(source.tokens))
    token = source.token(frozenset((bearer,)) if bearer else frozenset())
    body = await read_body(request, router.limits)
    now = datetime.now(UTC)
    capture = decode_v1(
        body, sdk_info=request.headers.get("PostHog-Sdk-Info"), limits=router.limits
    )
    await _make_durable(request, router, capture.events, token, now)
    return json_response({"results": {e.uuid: {"result": "ok"} for e in capture.events}})


def _bearer(header: str | None, *, required: bool) -> str | None:
    """The token of ``Authorization: Bearer <token>``; Unauthorized if malformed and required."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if header and required:
        raise Unauthorized('Authorization must be "Bearer <project token>"')
    return None


async def _make_durable(
    request: web.Request,
    router: Router,
    events: list[Captured],
    token: str | None,
    now: datetime,
) -> None:
    """Run the global pipeline on each event and append the survivors to the spool."""
    router.metrics.child(router.metrics.received, SOURCE).inc(len(events))
    context = request_context(request, router, token)  # memory only, like the client IP
    received_at = iso_z(now)
    profile = PostHogProfile(router, request)  # sources: product, common fields, privacy
    mapped, name = profile.map, profile.name
    # Event.new's work, per event without a keyword call: the client's uuid when it is a valid
    # one (stamped), and the request's received_at for all of the batch.
    await make_durable(router, SOURCE, [
        Event(stamped(uuid), received_at, event, mapped(data), SOURCE, name, context)
        for event, data, uuid in events], pipeline=profile.pipeline)
