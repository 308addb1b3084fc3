"""The OpenAPI document's building blocks: status texts, error answers, operations and the
shared component schemas (:mod:`.openapi` assembles the paths from them)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}

# Why each status can answer; an operation lists the ones it can give.
STATUS = {
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
    503: "Cannot take the request now (spool full or unreachable, draining, store unreadable, "
    "the delivery process restarting); "
    "retry after `Retry-After` seconds.",
}
INGEST_ERRORS = (400, 401, 405, 408, 413, 415, 429, 503)
ADMIN_ERRORS = (401, 404, 405, 429)


def error(status: int) -> Schema:
    return {"$ref": f"#/components/responses/Error{status}"}


def error_response(status: int) -> Schema:
    response: Schema = {"description": STATUS[status], "content": {JSON: {"schema": ERROR_REF}}}
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    if status == 405:
        response["headers"] = {
            "Allow": {"schema": {"type": "string"}, "description": "The methods this path answers."}
        }
    return response


def json(description: str, schema: Schema, **extra: Any) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def op(
    op_id: str,
    tag: str,
    summary: str,
    responses: dict[int | str, Schema],
    errors: tuple[int, ...] = (),
    **extra: Any,
) -> Schema:
    """One operation: its own responses plus the error answers it can give."""
    answers = {str(code): body for code, body in responses.items()}
    answers.update({str(code): error(code) for code in errors if str(code) not in answers})
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        **extra,
        "responses": dict(sorted(answers.items())),
    }


# -- schemas -------------------------------------------------------------------------------------


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
DATE = {"type": "string", "format": "date"}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": {"type": "string", "description": "a stable, snake_case code"},
            "detail": {"type": "string", "description": "what went wrong, for people"},
        },
        ("error", "detail"),
    ),
    "Beacon": obj(
        {
            "installation_id": {
                "type": "string",
                "description": "anonymous and stable per install",
            },
            "uuid": {
                "type": "string",
                "description": "the client's event id, kept for deduplication",
            },
            "version": STR,
            "platform": {"type": ["object", "string"]},
            "deployment_type": STR,
            "counts": {"type": "object"},
            "timestamp": {"type": ["string", "number"]},
            "telemetry": {"description": 'false (or "off", 0) opts the installation out'},
        },
        description="One installation's beacon. Other fields are allowed; the config's validate "
        "filter decides what is kept (config/schemas/beacon-v1.json by default).",
    ),
    "Accepted": obj({"accepted": {**INT, "description": "events in the request"}}, ("accepted",)),
    "Health": obj({"status": {"const": "ok"}}, ("status",)),
    "BackendHealth": obj(
        {
            "healthy": {"type": "boolean"},
            "consecutive_failures": INT,
            "last_error": NULLABLE_STR,
            "queued": {"type": ["integer", "null"]},
        },
        ("healthy",),
    ),
    "Readiness": obj(
        {
            "status": {"enum": ["ready", "not_ready"]},
            "spool_writable": {"type": "boolean"},
            "draining": {"type": "boolean"},
            "backends": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/BackendHealth"},
            },
            "delivery": obj(
                {
                    "process": {"enum": ["running", "unreachable"]},
                    "pid": {"type": ["integer", "null"]},
                },
                ("process", "pid"),
                description="serve --delivery process only: the delivery process, whose "
                "backends these are (unreachable while it restarts; ingest stays ready)",
            ),
        },
        ("status", "spool_writable", "draining", "backends"),
    ),
    "CaptureV0Result": obj({"status": {"const": 1}}, ("status",)),
    "CaptureV1Result": obj(
        {
            "results": {
                "type": "object",
                "additionalProperties": obj({"result": {"const": "ok"}}, ("result",)),
            }
        },
        ("results",),
    ),
    "DeadLetterSelection": obj(
        {
            "ids": {"type": "array", "items": {"type": "integer"}, "description": "only these"},
            "since": {"type": "string", "description": "only those failed at or after (ISO 8601)"},
        },
        additionalProperties=False,
    ),
    "StatsReport": obj(
        {
            "from": DATE,
            "to": DATE,
            "granularity": {"enum": ["day", "week", "month"]},
            "churn_known_until": DATE,
            "totals": {"type": "object"},
            "series": {"type": "array"},
            "breakdowns": {"type": "object"},
        },
        ("from", "to", "granularity", "totals", "series", "breakdowns"),
        description="Installations active, new and churned per period, and breakdowns by "
        "dimension (docs/stats.md).",
    ),
    "PublicStats": obj(
        {
            "generated_at": STR,
            "from": DATE,
            "to": DATE,
            "k": INT,
            "active": obj({d: {"type": ["integer", "null"]} for d in ("1d", "7d", "30d")}),
            "breakdowns": {"type": "object"},
        },
        ("from", "to", "k", "active", "breakdowns"),
        description="k-anonymous counts: a number below `k` is null, a bucket below `k` left out.",
    ),
}
ANY_OBJECT = {"type": "object"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- paths ---------------------------------------------------------------------------------------
