"""Every answer's shape: JSON bodies, ``{"error", "detail"}`` errors (a client's mistake is
never a 5xx), and the security headers every response leaves with."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from ..errors import InputError
from .paths import SOURCE, V0_PATHS, V1_PATH
from .state import ROUTER

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    if headers is None:  # the common case: one copy of headers made once (see _JSON_HEADERS)
        return web.Response(body=orjson.dumps(body), status=status, headers=_JSON_HEADERS)
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    """A JSON answer serialised beforehand (a handler's answers that recur)."""
    return web.Response(body=body, status=status, headers=_JSON_HEADERS)


def error_response(status: int, error: str, detail: str, retry_after: float | None = None
                   ) -> web.Response:
    # Rounded up: a client that comes back after Retry-After must find a token waiting.
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return json_response({"error": error, "detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error", "detail"}`` JSON (a client's mistake is never a 5xx),
    and every response with the security headers."""
    try:
        return secured(await handler(request))
    except Exception as exc:
        return secured(error_for(request, exc))


def error_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON answer for an exception a handler raised (re-raised if it is a redirect)."""
    if isinstance(exc, InputError):
        request.app[ROUTER].metrics.rejected.labels(_source(request), exc.error).inc()
        return error_response(exc.status, exc.error, exc.detail, exc.retry_after)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise secured(exc)
        error = exc.reason.lower().replace(" ", "_")
        resp = error_response(exc.status, error, exc.text or exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    # (called from an except clause: log.exception finds the traceback there)
    log.exception("unhandled error", path=request.path, method=request.method)
    return error_response(500, "internal_error", "the router failed; see its log")


def _source(request: web.Request) -> str:
    """The ``source`` label of a rejected request: beacon, posthog, or other."""
    path = request.path.rstrip("/") or "/"
    if path in V0_PATHS or path == V1_PATH:
        return SOURCE
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    return "beacon" if route in request.app[ROUTER].config.profiles.routes() else "other"


# Names as istr: a CIMultiDict looks an istr up by the case-folded form it carries, where a
# str is case-folded again on every lookup (secured() runs on every response: half its cost).
_SECURITY_HEADERS = (
    (istr("X-Content-Type-Options"), "nosniff"),
    (istr("Referrer-Policy"), "no-referrer"),
    (istr("X-Frame-Options"), "DENY"),
    (istr("Content-Security-Policy"),
     "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (istr("Cache-Control"), "no-store"),
)

R = TypeVar("R", bound=web.StreamResponse)
_SERVER = (istr("Server"), "beacon-router")  # not aiohttp's default, which names its version

# A JSON answer's headers, security headers included, copied by aiohttp into each response
# (secured() then finds them all present) rather than set one by one per request; held as a
# CIMultiDict, the copy takes its case-folded names as they are (from a dict: ~3 times slower).
_JSON_HEADERS = CIMultiDict([(hdrs.CONTENT_TYPE, "application/json"), *_SECURITY_HEADERS,
                             _SERVER])


def secured(response: R) -> R:
    """``response`` with the security headers; a handler's own value (a page's CSP, a public
    page's Cache-Control) is kept. Every response of both apps leaves through a middleware
    that calls this: aiohttp answers a request that matched no route (a malformed one) itself,
    without middlewares or response signals either way."""
    headers = response.headers
    for name, value in _SECURITY_HEADERS:
        if name not in headers:
            headers[name] = value
    headers[_SERVER[0]] = _SERVER[1]
    return response
