"""What posthog-js asks a PostHog host besides capture, answered as PostHog does with nothing
configured: every feature flag off, no remote config. And CORS on every PostHog path.

A browser SDK pointed at the router asks at start for

- its flags: ``POST /flags/?v=2`` (older SDKs: ``/decide/?v=3``, or ``/flags`` without ``v``);
- its remote config: ``GET /array/<token>/config.js`` (a script that sets
  ``window._POSTHOG_REMOTE_CONFIG[token]``), else ``GET /array/<token>/config`` (JSON).

Without an answer it logs errors and waits on them; a 404 without CORS headers is, to the
browser, a CORS error. The router has no flags and no remote config, so it answers with the
empty, valid document PostHog sends for a project without any: the SDK then runs on its local
config. The answers are the same for every token (they reveal nothing), so no token is checked.

:func:`with_cors`, called by the ingest guard, puts the CORS headers of
``sources.posthog.cors_origins`` on every answer of a PostHog path, errors included (a 429 of
the rate limit, a 405, a 413…), so a browser shows the SDK the real status instead of a CORS
failure.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from aiohttp import hdrs, web

from .paths import V0_PATHS, V1_PATH
from .posthog import POSTHOG
from .responses import R, json_response

FLAGS_PATHS = ("/flags", "/decide")
CONFIG_PREFIX = "/array/"
METHODS = "GET, POST, OPTIONS"
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,200}")  # PostHog project tokens: phc_ + base62
_POSTHOG_PATHS = frozenset((*V0_PATHS, V1_PATH, *FLAGS_PATHS))
_CACHE = "public, max-age=300"  # what PostHog's CDN keeps remote config for


def remote_config(token: str) -> dict[str, Any]:
    """The remote config of a project with nothing turned on server-side."""
    return {
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": False,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocapture_opt_out": False,
        "autocaptureExceptions": False,
        "analytics": {"endpoint": "/i/v0/e/"},
        "elementsChainAsString": True,
        "sessionRecording": False,
        "heatmaps": False,
        "surveys": False,
        "defaultIdentifiedOnly": True,
        "siteApps": [],
    }


def flags_answer(request: web.Request) -> dict[str, Any]:
    """``/flags`` v2 (``flags``), v1 and ``/decide`` (``featureFlags``): no flag, no error."""
    version = request.query.get("v", "")
    if request.path.startswith("/flags") and version.isdigit() and int(version) >= 2:
        return {"flags": {}, "errorsWhileComputingFlags": False, "quotaLimited": [],
                "requestId": str(uuid.uuid4())}
    answer: dict[str, Any] = {"featureFlags": {}, "featureFlagPayloads": {},
                              "errorsWhileComputingFlags": False, "quotaLimited": []}
    if request.path.startswith("/decide"):  # /decide also carried the remote config
        answer |= {"config": {"enable_collect_everything": True}, "toolbarParams": {},
                   "isAuthenticated": False, **remote_config("")}
        del answer["token"]
    return answer


async def flags(request: web.Request) -> web.Response:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={hdrs.ALLOW: METHODS})
    return json_response(flags_answer(request))


async def config_json(request: web.Request) -> web.Response:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={hdrs.ALLOW: "GET, OPTIONS"})
    return json_response(remote_config(_token(request)), headers={hdrs.CACHE_CONTROL: _CACHE})


async def config_js(request: web.Request) -> web.Response:
    token = _token(request)
    # The token is JSON-encoded into the script (it matched _TOKEN anyway): no injection.
    key = orjson.dumps(token).decode()
    body = (
        "(function() {\n"
        "  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {};\n"
        f"  window._POSTHOG_REMOTE_CONFIG[{key}] = {{\n"
        f"    config: {orjson.dumps(remote_config(token)).decode()},\n"
        "    siteApps: []\n"
        "  };\n"
        "})();\n"
    )
    return web.Response(text=body, content_type="application/javascript",
                        headers={hdrs.CACHE_CONTROL: _CACHE})


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    if not _TOKEN.fullmatch(token):
        raise web.HTTPNotFound(text="no such project token")
    return token


def is_posthog_path(path: str) -> bool:
    return path.rstrip("/") in _POSTHOG_PATHS or path.startswith(CONFIG_PREFIX)


def with_cors(request: web.Request, response: R) -> R:
    """``response`` with CORS headers when it answers a PostHog path, whatever answered it; a
    handler's own are kept. The ingest guard calls it on every answer of the main app."""
    if is_posthog_path(request.path):
        source = request.app.get(POSTHOG)
        if source is not None:  # the capture API is served
            for name, value in source.cors_headers(request, METHODS).items():
                response.headers.setdefault(name, value)
    return response


def add_posthog_config_routes(app: web.Application) -> None:
    """The flags and remote-config endpoints; only where the capture API is served
    (``sources.posthog`` on). CORS on every PostHog path: :func:`with_cors`."""
    if POSTHOG not in app:
        return
    for path in FLAGS_PATHS:
        for variant in (path, path + "/"):
            for method in ("GET", "POST", "OPTIONS"):
                app.router.add_route(method, variant, flags)
    app.router.add_get(CONFIG_PREFIX + "{token}/config", config_json)
    app.router.add_route("OPTIONS", CONFIG_PREFIX + "{token}/config", config_json)
    app.router.add_get(CONFIG_PREFIX + "{token}/config.js", config_js)
