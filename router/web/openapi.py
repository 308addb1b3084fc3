"""The OpenAPI 3.1 description of every HTTP endpoint, served at ``GET /openapi.json``.

This module is the one source: ``docs/openapi.json`` is its output
(``python -m router.web.openapi > docs/openapi.json``) and a test keeps the two equal. The PostHog
paths come from :mod:`router.web.posthog`' own constants, so a path added there appears here.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import orjson
from aiohttp import web

from .. import __version__
from ..ingest.beacon import ACCEPTED
from .openapi_admin import admin_paths, replay_and_tap_paths, stats_paths
from .openapi_schema import (
    ANY_OBJECT,
    INGEST_ERRORS,
    JSON,
    SCHEMAS,
    STATUS,
    Schema,
    error_response,
    json,
    op,
    ref,
)
from .paths import V0_METHODS, V0_PATHS, V1_METHODS, V1_PATH
from .posthog_config import CONFIG_PREFIX, FLAGS_PATHS


def _ingest_paths() -> dict[str, Schema]:
    beacons = {"oneOf": [ref("Beacon"), {"type": "array", "items": ref("Beacon"), "minItems": 1}]}
    text = {"type": "string"}
    content = {
        JSON: {"schema": beacons},
        "text/plain": {"schema": text},
        "application/x-www-form-urlencoded": {"schema": ANY_OBJECT},
        "application/yaml": {"schema": text},
        "application/openmetrics-text": {"schema": text},
    }
    return {
        "/beacon": {
            "post": op(
                "postBeacon",
                "ingest",
                "Accept beacons",
                {
                    200: json(
                        "Durable, answered as the matching source profile declares for its "
                        "client (Operately's accepts only 200; docs/sources.md).",
                        ANY_OBJECT,
                    ),
                    202: json(
                        "Every event in the request is durable (or was dropped by the pipeline "
                        "on purpose, e.g. opted out).",
                        ref("Accepted"),
                    ),
                },
                INGEST_ERRORS,
                description="A JSON object or an array of them, gzip, deflate or zstd encoded "
                "or not. "
                f"Media types read: {', '.join(ACCEPTED)}. With `sources.beacon.tokens` "
                "set, `Authorization: Bearer TOKEN` is required. The source profiles of the "
                "config (`sources:`, docs/sources.md) serve their products' own paths "
                "(`/usage_data`, `/ping`, …) the same way, each with the answer its client "
                "expects; `beacon-router check` lists them.",
                requestBody={"required": True, "content": content},
                security=[{}, {"sourceToken": []}],
            )
        }
    }


def _probe_paths() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": op(
                "healthz",
                "probes",
                "Liveness: the process answers",
                {200: json("Alive.", ref("Health"))},
            )
        },
        "/readyz": {
            "get": op(
                "readyz",
                "probes",
                "Readiness: config loaded, spool writable, not draining",
                {
                    200: json("Ready.", ref("Readiness")),
                    503: json(
                        "Not ready (draining, or the spool is not writable).", ref("Readiness")
                    ),
                },
            )
        },
        "/metrics": {
            "get": op(
                "metrics",
                "probes",
                "Prometheus metrics (docs/metrics.md)",
                {
                    200: {
                        "description": "The Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": op(
                "openapi",
                "probes",
                "This description",
                {200: json("OpenAPI 3.1.", ANY_OBJECT)},
                (429,),
            )
        },
    }


def _posthog_paths() -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    query = [{"$ref": f"#/components/parameters/{name}"} for name in _CAPTURE_QUERY]
    v0_errors = tuple(s for s in INGEST_ERRORS if s != 405)
    for base in V0_PATHS:
        for path in (base, base + "/"):
            name = "capture" + path.replace("/", "_").rstrip("_").title().replace("_", "")
            name += "Slash" * path.endswith("/")
            item: Schema = {"parameters": query}
            for method in V0_METHODS:
                item[method.lower()] = (
                    _preflight(name)
                    if method == "OPTIONS"
                    else op(
                        f"{name}{method.title()}",
                        "posthog",
                        "PostHog capture API v0",
                        {
                            200: json("Durable (PostHog's own answer).", ref("CaptureV0Result")),
                            204: {"description": "Durable; `beacon=1` asked for no body."},
                        },
                        v0_errors,
                        **({"requestBody": _posthog_body()} if method == "POST" else {}),
                    )
                )
            paths[path] = item
    for path in (V1_PATH, V1_PATH + "/"):
        name = "captureV1" + "Slash" * path.endswith("/")
        item = {}
        for method in V1_METHODS:
            item[method.lower()] = (
                _preflight(name)
                if method == "OPTIONS"
                else op(
                    f"{name}Post",
                    "posthog",
                    "PostHog capture API v1",
                    {200: json("Durable, one result per event uuid.", ref("CaptureV1Result"))},
                    tuple(s for s in INGEST_ERRORS if s != 405),
                    requestBody=_posthog_body(),
                    security=[{}, {"posthogProjectToken": []}],
                )
            )
        paths[path] = item
    return paths


def _posthog_config_paths() -> dict[str, Schema]:
    """posthog-js's start-up requests (posthog_config.py): no flags, no remote config."""
    paths: dict[str, Schema] = {}
    flags = json("No flag is on, none failed (PostHog's answer for a project without flags).",
                 ANY_OBJECT)
    for base in FLAGS_PATHS:
        for path in (base, base + "/"):
            name = base.strip("/") + "Slash" * path.endswith("/")
            item: Schema = {method: op(f"{name}{method.title()}", "posthog",
                                       "Feature flags (none): v=2 `flags`, else `featureFlags`",
                                       {200: flags}, (429,))
                            for method in ("get", "post")}
            item["options"] = _preflight(name)
            paths[path] = item
    token = [{"name": "token", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,200}$"}}]
    paths[CONFIG_PREFIX + "{token}/config"] = {
        "parameters": token,
        "get": op("remoteConfig", "posthog", "Remote config (nothing turned on), JSON",
                  {200: json("The config posthog-js falls back on.", ANY_OBJECT)}, (404, 429)),
        "options": _preflight("remoteConfig"),
    }
    paths[CONFIG_PREFIX + "{token}/config.js"] = {
        "parameters": token,
        "get": op("remoteConfigScript", "posthog",
                  "Remote config as the script posthog-js loads first",
                  {200: {"description": "Sets window._POSTHOG_REMOTE_CONFIG[token].",
                         "content": {"application/javascript": {"schema": {"type": "string"}}}}},
                  (404, 429)),
    }
    return paths


def _posthog_body() -> Schema:
    return {"$ref": "#/components/requestBodies/PostHogCapture"}


_CAPTURE_QUERY = {
    "data": "the payload, for GET and form posts (base64, lz64 or JSON)",
    "compression": "gzip-js, lz64 or base64",
    "beacon": "1: answer 204 with no body (navigator.sendBeacon)",
}


def _preflight(name: str) -> Schema:
    return op(
        f"{name}Options",
        "posthog",
        "CORS preflight",
        {
            204: {
                "description": "Allowed methods in `Allow`; CORS headers for the origins "
                "in `sources.posthog.cors_origins`."
            }
        },
        (429,),
    )


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "beacon-router",
            "version": __version__,
            "summary": "Accepts installation beacons, makes them privacy-safe, and delivers "
            "them durably to analytics backends.",
            "description": (
                'Every error is JSON `{"error", "detail"}`; a client\'s mistake is never a '
                "5xx. Every response carries security headers (`X-Content-Type-Options`, "
                "`Content-Security-Policy`, `Referrer-Policy`, `X-Frame-Options`). The admin "
                "endpoints and the stats dashboard answer 404 until `admin.token` is set and "
                "are served on `admin.listen` (127.0.0.1:8081), not the ingest port, unless "
                "`admin.listen: same`. The PostHog paths exist while `sources.posthog."
                "enabled`. See docs/operations.md."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": n, "description": d}
            for n, d in (
                ("ingest", "Beacons from installations"),
                ("posthog", "The PostHog capture API, for apps that already use a PostHog SDK"),
                ("probes", "Health, readiness, metrics and this description"),
                ("stats", "The installed base, read back from a store backend"),
                ("admin", "Operators' endpoints (Bearer admin token)"),
            )
        ],
        "paths": {
            **_ingest_paths(),
            **_probe_paths(),
            **_posthog_paths(),
            **_posthog_config_paths(),
            **stats_paths(),
            **admin_paths(),
            **replay_and_tap_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"Error{code}": error_response(code) for code in sorted(STATUS)},
            "parameters": {
                name: {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": text,
                }
                for name, text in _CAPTURE_QUERY.items()
            },
            "requestBodies": {
                "PostHogCapture": {
                    "required": False,
                    "content": {
                        JSON: {"schema": ANY_OBJECT},
                        "text/plain": {"schema": {}},
                        "application/x-www-form-urlencoded": {"schema": {}},
                    },
                }
            },
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "`admin.token`"},
                "sourceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "one of `sources.beacon.tokens`",
                },
                "posthogProjectToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a PostHog project token (v1)",
                },
            },
        },
    }


def render() -> bytes:
    """The document as the bytes of ``docs/openapi.json``."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2) + b"\n"


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``."""
    return web.Response(body=render(), content_type=JSON)


def add_openapi_route(app: web.Application) -> None:
    """Serve ``GET /openapi.json`` on ``app``."""
    app.router.add_get("/openapi.json", openapi_json)


if __name__ == "__main__":
    sys.stdout.buffer.write(render())
