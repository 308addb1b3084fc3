"""posthog-js itself, in Debian's headless Chromium, pointed at the router: it loads its remote
config and flags from the router, captures an event that lands in the backend, and the console
shows no CORS error.

posthog-js comes from npm (``browser/package.json`` and its lock pin it; ``npm ci`` installs it
when ``node_modules`` is missing) and is served to the page from there: no CDN. The page is on
another origin than the router, as a web app is, so every request is a cross-origin one.
Skipped without Chromium, Playwright or npm, except with CI=true, where it fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from capture_support import TOKEN, StartRouter
from support import IN_CI

BROWSER_DIR = Path(__file__).parent / "browser"
BUNDLE = BROWSER_DIR / "node_modules" / "posthog-js" / "dist" / "array.full.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>posthog-js against beacon-router</title>
<script src="/posthog-js/array.full.js"></script></head>
<body><script>
  window.posthog.init(%(token)s, {
    api_host: %(router)s,
    autocapture: false,
    capture_pageview: false,
    disable_session_recording: true,
    opt_out_useragent_filter: true,  // headless Chromium says HeadlessChrome: not a bot here
    loaded: (ph) => {
      ph.capture("browser test event", {plan: "free", n: 7});
      window.__captured = true;
      // No flag exists (the remote config says so); ask anyway, as an app that uses flags does.
      ph.onFeatureFlags(() => {
        window.__flag = ph.isFeatureEnabled("new-dashboard");
        window.__flagsLoaded = true;
      });
      ph.reloadFeatureFlags();
    },
  });
</script></body></html>
"""


def _skip_or_fail(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


@pytest.fixture(scope="module")
def posthog_js() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        _skip_or_fail(f"the browser test needs {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _skip_or_fail("the browser test needs playwright (pip install -e '.[test]')")
    if not BUNDLE.is_file():
        npm = shutil.which("npm")
        if npm is None:
            _skip_or_fail("npm is needed to install posthog-js")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not BUNDLE.is_file():
            _skip_or_fail(f"npm ci failed (is the npm registry reachable?):\n{done.stderr[-2000:]}")
    return BUNDLE


async def test_posthog_js_in_chromium_captures_through_the_router_without_cors_errors(
    posthog_js, start_router: StartRouter, aiohttp_server
):
    from playwright.async_api import async_playwright

    # The web app's origin: serves the page and posthog-js from node_modules.
    site = web.Application()
    page_html: dict[str, str] = {}

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page_html["text"], content_type="text/html")

    async def bundle(_: web.Request) -> web.FileResponse:
        return web.FileResponse(posthog_js)

    async def favicon(_: web.Request) -> web.Response:
        return web.Response(status=204)

    site.router.add_get("/", index)
    site.router.add_get("/favicon.ico", favicon)
    site.router.add_get("/posthog-js/array.full.js", bundle)
    app_server = await aiohttp_server(site)
    origin = str(app_server.make_url("")).rstrip("/")
    router = await start_router(posthog=f"{{cors_origins: ['{origin}']}}")
    page_html["text"] = PAGE % {"token": orjson.dumps(TOKEN).decode(),
                                "router": orjson.dumps(router.url).decode()}

    console: list[str] = []
    answered: dict[str, int] = {}
    failed: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
            page.on("response", lambda r: answered.__setitem__(
                r.url.removeprefix(router.url).split("?")[0], r.status))
            await page.goto(origin + "/")
            await page.wait_for_function("window.__captured === true", timeout=30_000)
            await page.wait_for_function("window.__flagsLoaded === true", timeout=30_000)
            flag = await page.evaluate("window.__flag")
            try:
                events = await router.delivered(1, timeout=30)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; answers {answered}, failed {failed}, "
                                     f"console {console}") from None
            await asyncio.sleep(1)  # late requests (flags, retries) would show here
        finally:
            await browser.close()

    [event] = [e for e in events if e.name == "browser test event"]
    assert event.source == "posthog"
    assert event.data["properties"]["plan"] == "free" and event.data["properties"]["n"] == 7
    assert event.data["properties"]["$lib"] == "web"
    # It asked the router for its remote config and flags, and got answers, not errors.
    assert answered.get(f"/array/{TOKEN}/config.js") == 200, answered
    assert answered.get("/flags/") == 200, answered
    assert flag is None  # posthog-js: undefined for a flag the answer does not have
    assert not failed, failed
    assert not [line for line in console if "CORS" in line or "Access-Control" in line], console
    assert not [line for line in console if line.startswith(("error", "pageerror"))], console
