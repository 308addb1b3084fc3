"""The dashboard's live view in a real headless Chromium: it streams /admin/tap and shows each
event the pipeline kept, as text."""

from __future__ import annotations

import asyncio

import aiohttp
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
            await page.wait_for_function("document.querySelectorAll('#live-stage option')"
                                         ".length === 2")
            stages = await page.eval_on_selector_all("#live-stage option",
                                                     "os => os.map(o => o.value)")
            assert stages == ["", "archive"]
            await page.click("#live-toggle")
            for _ in range(500):
                if TAP.active:
                    break
                await asyncio.sleep(0.01)
            async with aiohttp.ClientSession() as http:
                for i in range(3):
                    body = {"installation_id": f"live-{i}", "hostname": "<b>host</b>"}
                    async with http.post(f"{base}/beacon", json=body) as resp:
                        assert resp.status == 202
            await page.wait_for_function(
                "document.querySelectorAll('#live-table tbody tr').length === 3")
            cells = await page.eval_on_selector_all(
                "#live-table tbody tr td:last-child", "tds => tds.map(td => td.textContent)")
            assert cells == [f'{{"installation_id":"live-{i}"}}' for i in (2, 1, 0)]
            await page.click("#live-toggle")  # stop: the tap closes
            for _ in range(500):
                if not TAP.active:
                    break
                await asyncio.sleep(0.01)
            assert not TAP.active and errors == []
        finally:
            await browser.close()
