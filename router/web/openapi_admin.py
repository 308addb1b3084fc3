"""The OpenAPI paths of the operator's side: the installed-base statistics and the admin API."""

from __future__ import annotations

from .openapi_schema import (
    ADMIN_ERRORS,
    ANY_OBJECT,
    DATE,
    ERROR_REF,
    INT,
    JSON,
    STATUS,
    STR,
    Schema,
    json,
    obj,
    op,
    ref,
)


def stats_paths() -> dict[str, Schema]:
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    html = {"text/html": {"schema": {"type": "string"}}}
    query = [
        {"name": "from", "in": "query", "schema": DATE, "description": "first day (UTC)"},
        {"name": "to", "in": "query", "schema": DATE, "description": "last day; default today"},
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
            "get": op(
                "publicStats",
                "stats",
                "k-anonymous installed-base counts (`stats.public: true`)",
                {
                    200: {
                        "description": "JSON, or an HTML page for browsers (`?format=html`).",
                        "content": {JSON: {"schema": ref("PublicStats")}, **html},
                    }
                },
                (404, 405, 429, 503),
                parameters=[
                    {"name": "format", "in": "query", "schema": {"enum": ["json", "html"]}}
                ],
            )
        },
        "/api/stats": {
            "get": op(
                "apiStats",
                "stats",
                "The installed-base report (admin token)",
                {200: json("The report.", ref("StatsReport"))},
                (400, *ADMIN_ERRORS, 503),
                parameters=query,
                security=admin,
            )
        },
        "/dashboard": {
            "get": op(
                "dashboard",
                "stats",
                "The statistics dashboard page (it asks for the token)",
                {200: {"description": "The page; it holds no data.", "content": html}},
                (404, 405, 429),
            )
        },
        "/dashboard/static/{name}": {
            "get": op(
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


def admin_paths() -> dict[str, Schema]:
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
    selection = {"required": False, "content": {JSON: {"schema": ref("DeadLetterSelection")}}}
    dead_letter = obj(
        {
            "id": {"type": "integer"},
            "failed_at": STR,
            "attempts": INT,
            "reason": STR,
            "event": {"type": ["object", "null"]},
        }
    )
    return {
        "/admin/status": {
            "get": op(
                "adminStatus",
                "admin",
                "The process, config and backends",
                {200: json("Status.", ANY_OBJECT)},
                ADMIN_ERRORS,
                **sec,
            )
        },
        "/admin/backends": {
            "get": op(
                "adminBackends",
                "admin",
                "Every backend: queue, dead letters, health",
                {200: json("Backends by name.", obj({"backends": ANY_OBJECT}, ("backends",)))},
                (*ADMIN_ERRORS, 503),
                **sec,
            )
        },
        "/admin/backends/{name}/dlq": {
            "parameters": name,
            "get": op(
                "adminDlqList",
                "admin",
                "A backend's dead letters, oldest first",
                {
                    200: json(
                        "Dead letters.",
                        obj(
                            {
                                "backend": STR,
                                "dead_letters": {"type": "array", "items": dead_letter},
                            },
                            ("backend", "dead_letters"),
                        ),
                    )
                },
                (400, *ADMIN_ERRORS),
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {"name": "since", "in": "query", "schema": STR},
                ],
                **sec,
            ),
        },
        "/admin/backends/{name}/dlq/replay": {
            "parameters": name,
            "post": op(
                "adminDlqReplay",
                "admin",
                "Put dead letters back in the backend's queue",
                {
                    200: json(
                        "How many.",
                        obj({"backend": STR, "replayed": INT}, ("backend", "replayed")),
                    )
                },
                (400, *ADMIN_ERRORS, 409),
                requestBody=selection,
                **sec,
            ),
        },
        "/admin/backends/{name}/dlq/purge": {
            "parameters": name,
            "post": op(
                "adminDlqPurge",
                "admin",
                "Delete dead letters",
                {
                    200: json(
                        "How many; a backend no longer configured also loses its queue.",
                        obj(
                            {
                                "backend": STR,
                                "purged": INT,
                                "released_queue": {"type": "boolean"},
                            },
                            ("backend", "purged", "released_queue"),
                        ),
                    )
                },
                (400, *ADMIN_ERRORS),
                requestBody=selection,
                **sec,
            ),
        },
        "/admin/reload": {
            "post": op(
                "adminReload",
                "admin",
                "Re-read the config file (as SIGHUP does)",
                {
                    200: json("Applied; what changed.", ANY_OBJECT),
                    202: json(
                        "The file is valid; every process (the --workers workers, the "
                        "delivery process) was signalled to reload it; their verdicts are in "
                        "their logs and /admin/status.",
                        ANY_OBJECT,
                    ),
                    422: json(STATUS[422], {"allOf": [ERROR_REF, ANY_OBJECT]}),
                },
                ADMIN_ERRORS,
                **sec,
            )
        },
    }


def replay_and_tap_paths() -> dict[str, Schema]:
    """``beacon-router replay`` and ``tap`` over the admin API (router/replay, router/tap)."""
    sec: Schema = {"security": [{"adminToken": []}]}
    job = obj(
        {
            "id": STR,
            "running": {"type": "boolean"},
            "done": {"type": "boolean"},
            "delivered": INT,
            "dead_lettered": INT,
            "scanned": INT,
        },
        ("id", "running", "done"),
    )
    job_id = [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": STR,
            "description": "the id POST /admin/replays answered",
        }
    ]
    start = obj(
        {
            "from": STR,
            "to": STR,
            "since": STR,
            "until": STR,
            "where": ANY_OBJECT,
            "dry_run": {"type": "boolean"},
            "restart": {"type": "boolean"},
        },
        ("from", "to"),
        additionalProperties=False,
    )
    return {
        "/admin/replays": {
            "post": op(
                "adminReplayStart",
                "admin",
                "Replay a store backend's archive into another backend",
                {202: json("Started (or already finished: see done).", job)},
                (400, *ADMIN_ERRORS, 409),
                requestBody={"required": True, "content": {JSON: {"schema": start}}},
                **sec,
            ),
            "get": op(
                "adminReplays",
                "admin",
                "The replays this process started",
                {
                    200: json(
                        "Replays.", obj({"replays": {"type": "array", "items": job}}, ("replays",))
                    )
                },
                ADMIN_ERRORS,
                **sec,
            ),
        },
        "/admin/replays/{id}": {
            "parameters": job_id,
            "get": op(
                "adminReplay",
                "admin",
                "How far a replay is",
                {200: json("The replay.", job)},
                ADMIN_ERRORS,
                **sec,
            ),
        },
        "/admin/replays/{id}/stop": {
            "parameters": job_id,
            "post": op(
                "adminReplayStop",
                "admin",
                "Stop a replay after its batch in flight",
                {200: json("The replay, stopped.", job)},
                ADMIN_ERRORS,
                **sec,
            ),
        },
        "/admin/tap": {
            "get": op(
                "adminTap",
                "admin",
                "Events as they flow, as JSON lines (a stream)",
                {
                    200: {
                        "description": "One event per line; an empty line keeps the stream "
                        'open; {"tap": {"dropped": N}} says N were missed.',
                        "content": {"application/x-ndjson": {"schema": STR}},
                    }
                },
                (400, *ADMIN_ERRORS, 503),
                parameters=[
                    {
                        "name": "backend",
                        "in": "query",
                        "schema": STR,
                        "description": "what this backend is handed; default: what the pipeline "
                        "kept",
                    },
                    {
                        "name": "when",
                        "in": "query",
                        "schema": STR,
                        "description": "a condition as JSON, as in `when:`",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000000},
                    },
                ],
                **sec,
            ),
        },
    }
