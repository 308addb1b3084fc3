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

Schema = dict[str, Any]
JSON = "application/json"
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}

# Why each status can answer; an operation lists the ones it can give.
_STATUS = {
    400: "The body or a parameter is malformed; `detail` says what and where.",
    401: "A token is required and this one is missing or unknown.",
    404: "Not found, or this endpoint is off in the config.",
    405: "The method is not allowed on this path; `Allow` lists those that are.",
    408: "The request body did not arrive within `server.request_timeout`.",
    409: "The request conflicts with the router's state.",
    413: "The body, or what it decompresses to, is over the configured cap.",
    415: "The content type or content encoding is not one the router reads.",
    422: "The config file is invalid; the running config is kept.",
    429: "Rate limited; come back after `Retry-After` seconds.",
    503: "Cannot take the request now (spool full or unreachable, draining, store unreadable); "
    "retry after `Retry-After` seconds.",
}
_INGEST_ERRORS = (400, 401, 405, 408, 413, 415, 429, 503)
_ADMIN_ERRORS = (401, 404, 405, 429)


def _error(status: int) -> Schema:
    return {"$ref": f"#/components/responses/Error{status}"}


def _error_response(status: int) -> Schema:
    response: Schema = {"description": _STATUS[status], "content": {JSON: {"schema": _ERROR_REF}}}
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    if status == 405:
        response["headers"] = {
            "Allow": {"schema": {"type": "string"}, "description": "The methods this path answers."}
        }
    return response


def _json(description: str, schema: Schema, **extra: Any) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _op(
    op_id: str,
    tag: str,
    summary: str,
    responses: dict[int | str, Schema],
    errors: tuple[int, ...] = (),
    **extra: Any,
) -> Schema:
    """One operation: its own responses plus the error answers it can give."""
    answers = {str(code): body for code, body in responses.items()}
    answers.update({str(code): _error(code) for code in errors if str(code) not in answers})
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        **extra,
        "responses": dict(sorted(answers.items())),
    }


# -- schemas -------------------------------------------------------------------------------------


def _obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_DATE = {"type": "string", "format": "date"}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        {
            "error": {"type": "string", "description": "a stable, snake_case code"},
            "detail": {"type": "string", "description": "what went wrong, for people"},
        },
        ("error", "detail"),
    ),
    "Beacon": _obj(
        {
            "installation_id": {
                "type": "string",
                "description": "anonymous and stable per install",
            },
            "uuid": {
                "type": "string",
                "description": "the client's event id, kept for deduplication",
            },
            "version": _STR,
            "platform": {"type": ["object", "string"]},
            "deployment_type": _STR,
            "counts": {"type": "object"},
            "timestamp": {"type": ["string", "number"]},
            "telemetry": {"description": 'false (or "off", 0) opts the installation out'},
        },
        description="One installation's beacon. Other fields are allowed; the config's validate "
        "filter decides what is kept (config/schemas/beacon-v1.json by default).",
    ),
    "Accepted": _obj({"accepted": {**_INT, "description": "events in the request"}}, ("accepted",)),
    "Health": _obj({"status": {"const": "ok"}}, ("status",)),
    "BackendHealth": _obj(
        {
            "healthy": {"type": "boolean"},
            "consecutive_failures": _INT,
            "last_error": _NULLABLE_STR,
            "queued": {"type": ["integer", "null"]},
        },
        ("healthy",),
    ),
    "Readiness": _obj(
        {
            "status": {"enum": ["ready", "not_ready"]},
            "spool_writable": {"type": "boolean"},
            "draining": {"type": "boolean"},
            "backends": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/BackendHealth"},
            },
        },
        ("status", "spool_writable", "draining", "backends"),
    ),
    "CaptureV0Result": _obj({"status": {"const": 1}}, ("status",)),
    "CaptureV1Result": _obj(
        {
            "results": {
                "type": "object",
                "additionalProperties": _obj({"result": {"const": "ok"}}, ("result",)),
            }
        },
        ("results",),
    ),
    "DeadLetterSelection": _obj(
        {
            "ids": {"type": "array", "items": {"type": "integer"}, "description": "only these"},
            "since": {"type": "string", "description": "only those failed at or after (ISO 8601)"},
        },
        additionalProperties=False,
    ),
    "StatsReport": _obj(
        {
            "from": _DATE,
            "to": _DATE,
            "granularity": {"enum": ["day", "week", "month"]},
            "churn_known_until": _DATE,
            "totals": {"type": "object"},
            "series": {"type": "array"},
            "breakdowns": {"type": "object"},
        },
        ("from", "to", "granularity", "totals", "series", "breakdowns"),
        description="Installations active, new and churned per period, and breakdowns by "
        "dimension (docs/stats.md).",
    ),
    "PublicStats": _obj(
        {
            "generated_at": _STR,
            "from": _DATE,
            "to": _DATE,
            "k": _INT,
            "active": _obj({d: {"type": ["integer", "null"]} for d in ("1d", "7d", "30d")}),
            "breakdowns": {"type": "object"},
        },
        ("from", "to", "k", "active", "breakdowns"),
        description="k-anonymous counts: a number below `k` is null, a bucket below `k` left out.",
    ),
}
_ANY_OBJECT = {"type": "object"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- paths ---------------------------------------------------------------------------------------


def _ingest_paths() -> dict[str, Schema]:
    beacons = {"oneOf": [_ref("Beacon"), {"type": "array", "items": _ref("Beacon"), "minItems": 1}]}
    text = {"type": "string"}
    content = {
        JSON: {"schema": beacons},
        "text/plain": {"schema": text},
        "application/x-www-form-urlencoded": {"schema": _ANY_OBJECT},
        "application/yaml": {"schema": text},
        "application/openmetrics-text": {"schema": text},
    }
    return {
        "/beacon": {
            "post": _op(
                "postBeacon",
                "ingest",
                "Accept beacons",
                {
                    202: _json(
                        "Every event in the request is durable (or was dropped by the pipeline "
                        "on purpose, e.g. opted out).",
                        _ref("Accepted"),
                    )
                },
                _INGEST_ERRORS,
                description="A JSON object or an array of them, gzip or deflate encoded or not. "
                f"Media types read: {', '.join(ACCEPTED)}. With `sources.beacon.tokens` "
                "set, `Authorization: Bearer TOKEN` is required.",
                requestBody={"required": True, "content": content},
                security=[{}, {"sourceToken": []}],
            )
        }
    }


def _probe_paths() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": _op(
                "healthz",
                "probes",
                "Liveness: the process answers",
                {200: _json("Alive.", _ref("Health"))},
            )
        },
        "/readyz": {
            "get": _op(
                "readyz",
                "probes",
                "Readiness: config loaded, spool writable, not draining",
                {
                    200: _json("Ready.", _ref("Readiness")),
                    503: _json(
                        "Not ready (draining, or the spool is not writable).", _ref("Readiness")
                    ),
                },
            )
        },
        "/metrics": {
            "get": _op(
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
            "get": _op(
                "openapi",
                "probes",
                "This description",
                {200: _json("OpenAPI 3.1.", _ANY_OBJECT)},
                (429,),
            )
        },
    }


def _posthog_paths() -> dict[str, Schema]:
    from .posthog import V0_METHODS, V0_PATHS, V1_METHODS, V1_PATH

    paths: dict[str, Schema] = {}
    query = [{"$ref": f"#/components/parameters/{name}"} for name in _CAPTURE_QUERY]
    v0_errors = tuple(s for s in _INGEST_ERRORS if s != 405)
    for base in V0_PATHS:
        for path in (base, base + "/"):
            name = "capture" + path.replace("/", "_").rstrip("_").title().replace("_", "")
            name += "Slash" * path.endswith("/")
            item: Schema = {"parameters": query}
            for method in V0_METHODS:
                item[method.lower()] = (
                    _preflight(name)
                    if method == "OPTIONS"
                    else _op(
                        f"{name}{method.title()}",
                        "posthog",
                        "PostHog capture API v0",
                        {
                            200: _json("Durable (PostHog's own answer).", _ref("CaptureV0Result")),
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
                else _op(
                    f"{name}Post",
                    "posthog",
                    "PostHog capture API v1",
                    {200: _json("Durable, one result per event uuid.", _ref("CaptureV1Result"))},
                    tuple(s for s in _INGEST_ERRORS if s != 405),
                    requestBody=_posthog_body(),
                    security=[{}, {"posthogProjectToken": []}],
                )
            )
        paths[path] = item
    return paths


def _posthog_body() -> Schema:
    return {"$ref": "#/components/requestBodies/PostHogCapture"}


_CAPTURE_QUERY = {
    "data": "the payload, for GET and form posts (base64, lz64 or JSON)",
    "compression": "gzip-js, lz64 or base64",
    "beacon": "1: answer 204 with no body (navigator.sendBeacon)",
}


def _preflight(name: str) -> Schema:
    return _op(
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


def _stats_paths() -> dict[str, Schema]:
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    html = {"text/html": {"schema": {"type": "string"}}}
    query = [
        {"name": "from", "in": "query", "schema": _DATE, "description": "first day (UTC)"},
        {"name": "to", "in": "query", "schema": _DATE, "description": "last day; default today"},
        {"name": "granularity", "in": "query", "schema": {"enum": ["day", "week", "month"]}},
        {
            "name": "dimension",
            "in": "query",
            "schema": {"type": "string"},
            "description": "comma-separated configured dimensions, e.g. version,platform.os",
        },
    ]
    return {
        "/public/stats": {
            "get": _op(
                "publicStats",
                "stats",
                "k-anonymous installed-base counts (`stats.public: true`)",
                {
                    200: {
                        "description": "JSON, or an HTML page for browsers (`?format=html`).",
                        "content": {JSON: {"schema": _ref("PublicStats")}, **html},
                    }
                },
                (404, 405, 429, 503),
                parameters=[
                    {"name": "format", "in": "query", "schema": {"enum": ["json", "html"]}}
                ],
            )
        },
        "/api/stats": {
            "get": _op(
                "apiStats",
                "stats",
                "The installed-base report (admin token)",
                {200: _json("The report.", _ref("StatsReport"))},
                (400, *_ADMIN_ERRORS, 503),
                parameters=query,
                security=admin,
            )
        },
        "/dashboard": {
            "get": _op(
                "dashboard",
                "stats",
                "The statistics dashboard page (it asks for the token)",
                {200: {"description": "The page; it holds no data.", "content": html}},
                (404, 405, 429),
            )
        },
        "/dashboard/static/{name}": {
            "get": _op(
                "dashboardStatic",
                "stats",
                "The dashboard's scripts",
                {
                    200: {
                        "description": "A script.",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    }
                },
                (404, 405, 429),
                parameters=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            )
        },
    }


def _admin_paths() -> dict[str, Schema]:
    sec: Schema = {"security": [{"adminToken": []}]}
    name = [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "the backend's name in the config",
        }
    ]
    selection = {"required": False, "content": {JSON: {"schema": _ref("DeadLetterSelection")}}}
    dead_letter = _obj(
        {
            "id": {"type": "integer"},
            "failed_at": _STR,
            "attempts": _INT,
            "reason": _STR,
            "event": {"type": ["object", "null"]},
        }
    )
    return {
        "/admin/status": {
            "get": _op(
                "adminStatus",
                "admin",
                "The process, config and backends",
                {200: _json("Status.", _ANY_OBJECT)},
                _ADMIN_ERRORS,
                **sec,
            )
        },
        "/admin/backends": {
            "get": _op(
                "adminBackends",
                "admin",
                "Every backend: queue, dead letters, health",
                {200: _json("Backends by name.", _obj({"backends": _ANY_OBJECT}, ("backends",)))},
                (*_ADMIN_ERRORS, 503),
                **sec,
            )
        },
        "/admin/backends/{name}/dlq": {
            "parameters": name,
            "get": _op(
                "adminDlqList",
                "admin",
                "A backend's dead letters, oldest first",
                {
                    200: _json(
                        "Dead letters.",
                        _obj(
                            {
                                "backend": _STR,
                                "dead_letters": {"type": "array", "items": dead_letter},
                            },
                            ("backend", "dead_letters"),
                        ),
                    )
                },
                (400, *_ADMIN_ERRORS),
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "since", "in": "query", "schema": _STR},
                ],
                **sec,
            ),
        },
        "/admin/backends/{name}/dlq/replay": {
            "parameters": name,
            "post": _op(
                "adminDlqReplay",
                "admin",
                "Put dead letters back in the backend's queue",
                {
                    200: _json(
                        "How many.",
                        _obj({"backend": _STR, "replayed": _INT}, ("backend", "replayed")),
                    )
                },
                (400, *_ADMIN_ERRORS, 409),
                requestBody=selection,
                **sec,
            ),
        },
        "/admin/backends/{name}/dlq/purge": {
            "parameters": name,
            "post": _op(
                "adminDlqPurge",
                "admin",
                "Delete dead letters",
                {
                    200: _json(
                        "How many; a backend no longer configured also loses its queue.",
                        _obj(
                            {
                                "backend": _STR,
                                "purged": _INT,
                                "released_queue": {"type": "boolean"},
                            },
                            ("backend", "purged", "released_queue"),
                        ),
                    )
                },
                (400, *_ADMIN_ERRORS),
                requestBody=selection,
                **sec,
            ),
        },
        "/admin/reload": {
            "post": _op(
                "adminReload",
                "admin",
                "Re-read the config file (as SIGHUP does)",
                {
                    200: _json("Applied; what changed.", _ANY_OBJECT),
                    422: _json(_STATUS[422], {"allOf": [_ERROR_REF, _ANY_OBJECT]}),
                },
                _ADMIN_ERRORS,
                **sec,
            )
        },
    }


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
            **_stats_paths(),
            **_admin_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"Error{code}": _error_response(code) for code in sorted(_STATUS)},
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
                        JSON: {"schema": _ANY_OBJECT},
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
