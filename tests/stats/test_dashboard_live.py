"""The dashboard's live view in a real headless Chromium: it streams /admin/tap and shows each
event the pipeline kept, as text."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from support import until
from test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, TOKEN, _require_browser

from router.config.loader import loads
from router.tap import TAP
from router.web.app import create_app


async def test_the_live_view_shows_events_as_they_arrive(sqlite_store, tmp_path,
                                                         aiohttp_server):
    _require_browser()
    from playwright.async_api import async_playwright

    config = loads(f"""
spool: {{path: "{tmp_path / "spool.db"}"}}
pipeline: [{{type: drop, fields: [hostname]}}]
backends:
  archive: {{type: store, url: "{sqlite_store.url}"}}
admin: {{token: {TOKEN}, listen: same}}
""")
    server = await aiohttp_server(create_app(config))
    base = f"http://127.0.0.1:{server.port}"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/dashboard")
            await page.fill("#token", TOKEN)
            await page.click("#token-form button")
            await page.wait_for_selector("body[data-loaded]")
            # Polled with evaluate, not wait_for_function: its in-page polling evaluates a
            # string, which the dashboard's CSP (no 'unsafe-eval') rightly refuses.
            await until(lambda: page.evaluate(
                "document.querySelectorAll('#live-stage option').length === 2"), timeout=30)
            stages = await page.eval_on_selector_all("#live-stage option",
                                                     "os => os.map(o => o.value)")
            assert stages == ["", "archive"]
            before = TAP.subscribers
            await page.click("#live-toggle")
            await until(lambda: page.evaluate(
                "document.getElementById('live-status').textContent === 'watching…'"), timeout=30)
            # Until the page shows three: the browser's tap subscribes a moment after the click.
            sent = 0
            async with aiohttp.ClientSession() as http:
                while await page.eval_on_selector_all("#live-table tbody tr",
                                                      "rows => rows.length") < 3:
                    assert sent < 500, "the live view never showed the events"
                    body = {"installation_id": f"live-{sent}", "hostname": "<b>host</b>"}
                    async with http.post(f"{base}/beacon", json=body) as resp:
                        assert resp.status == 202
                    sent += 1
                    await asyncio.sleep(0.02)
            cells = await page.eval_on_selector_all(
                "#live-table tbody tr td:last-child", "tds => tds.map(td => td.textContent)")
            shown = [int(cell.split("live-")[1].split('"')[0]) for cell in cells]
            # Newest first, none missing in between, none shown twice.
            assert shown == list(range(shown[0], shown[0] - len(shown), -1)) and shown[0] < sent
            # As text, the hostname dropped (and the product the source profiles add).
            assert all(json.loads(cell) == {"installation_id": f"live-{n}", "product": "unknown"}
                       for cell, n in zip(cells, shown, strict=True))
            await page.click("#live-toggle")  # stop: the tap closes
            for _ in range(500):
                if TAP.subscribers == before:
                    break
                await asyncio.sleep(0.01)
            assert TAP.subscribers == before and errors == []
        finally:
            await browser.close()
