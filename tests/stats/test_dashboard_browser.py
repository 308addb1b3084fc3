"""The dashboard in a real headless Chromium against a router seeded with synthetic beacons.

Needs Debian's ``chromium`` (``apt-get install chromium``) and Playwright for Python (the
``test`` extra); it never downloads a browser. Skipped when either is missing, unless CI=true.
``UPDATE_SCREENSHOT=1`` also saves ``docs/dashboard.png``, the picture the README shows.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Store, beacon
from support import IN_CI, REPO

from router.config.loader import loads
from router.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "dashboard-test-token-0123456789"
# The last 90 days, so that "active today" and churn read as they would in production.
END = datetime.now(UTC).date()
START = END - timedelta(days=89)
SCREENSHOT = Path(REPO) / "docs" / "dashboard.png"


def _require_browser() -> None:
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)


def synthetic_base() -> tuple[list, dict[str, int], dict[str, int], dict[str, int]]:
    """A growing installed base that upgrades through three versions; a third of it was
    already there a month before the range.

    Returns the beacons, and, computed here independently of the router, the active
    installations per day, and the installations per platform and per product (the source
    profile's, as the shipped config's `product` breakdown shows it) within the range.
    """
    rng = random.Random(7)
    events, active, last_os, product_of = [], defaultdict(set), {}, {}
    for n in range(80):
        joined = START + timedelta(days=rng.randrange(0, 80) if n >= 25 else -30)
        left = END if rng.random() < 0.8 else joined + timedelta(days=rng.randrange(30, 90))
        os_ = rng.choice(["linux", "linux", "linux", "darwin", "windows"])
        deployment = rng.choice(["docker", "docker", "kubernetes", "source"])
        eager = rng.random()
        product = rng.choice(["operately", "operately", "gitlab", "nextcloud"])
        day = joined
        while day <= min(left, END):
            if rng.random() < 0.9:  # some days an installation is offline
                age = (day - START).days
                version = (
                    "1.6.0"
                    if age > 55 + 20 * eager
                    else "1.5.2"
                    if age > 20 + 20 * eager
                    else "1.4.1"
                )
                events.append(beacon(day.isoformat(), f"inst-{n}", version, os_, deployment,
                                     product=product))
                if day >= START:
                    active[day.isoformat()].add(n)
                    last_os[n], product_of[n] = os_, product
            day += timedelta(days=1)
    per_os: dict[str, int] = defaultdict(int)
    for os_ in last_os.values():
        per_os[os_] += 1
    per_product: dict[str, int] = defaultdict(int)
    for product in product_of.values():
        per_product[product] += 1
    return events, {d: len(s) for d, s in active.items()}, dict(per_os), dict(per_product)


async def test_dashboard_draws_the_stored_numbers(sqlite_store: Store, tmp_path, aiohttp_server):
    _require_browser()
    from playwright.async_api import async_playwright

    events, active_per_day, per_os, per_product = synthetic_base()
    await sqlite_store.add(events)
    config = loads(f"""
spool: {{path: "{tmp_path / "spool.db"}"}}
backends:
  archive: {{type: store, url: "{sqlite_store.url}"}}
admin: {{token: {TOKEN}, listen: same}}
stats: {{dimensions: [product, version, platform.os, deployment_type]}}  # the shipped ones
""")
    server = await aiohttp_server(create_app(config))
    url = f"http://127.0.0.1:{server.port}/dashboard?from={START}&to={END}&granularity=day"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(url)
            await page.fill("#token", TOKEN)  # first visit: the page asks for the token
            await page.click("#token-form button")
            await page.wait_for_selector("body[data-loaded]")

            days = [(START + timedelta(days=i)).isoformat() for i in range((END - START).days + 1)]
            expected_active = [active_per_day.get(d, 0) for d in days]
            drawn = await page.evaluate("""() => {
                const chart = (id) => Chart.getChart(document.getElementById(id));
                const sets = (id) => chart(id).data.datasets.map((d) => [d.label, d.data]);
                return {
                    labels: chart("active-chart").data.labels,
                    active: sets("active-chart"),
                    versions: sets("versions-chart"),
                    os: [chart("bars-platform_os").data.labels, sets("bars-platform_os")],
                    product: [chart("bars-product").data.labels, sets("bars-product")],
                    deployment: chart("bars-deployment_type").data.labels,
                    pixels: chart("active-chart").width * chart("active-chart").height,
                    totals: Object.fromEntries([...document.querySelectorAll("[data-total]")]
                        .map((el) => [el.dataset.total, el.textContent])),
                    rows: document.querySelectorAll("#series-table tbody tr").length,
                };
            }""")
            assert drawn["labels"] == days
            assert drawn["active"][0] == ["active per day", expected_active]
            # Stacked versions: each active installation counted once a day.
            assert [
                sum(col) for col in zip(*(d for _, d in drawn["versions"]), strict=True)
            ] == expected_active
            assert {label for label, _ in drawn["versions"]} == {"1.4.1", "1.5.2", "1.6.0"}
            os_labels, [(_, os_counts)] = drawn["os"]
            assert dict(zip(os_labels, os_counts, strict=True)) == per_os
            product_labels, [(_, product_counts)] = drawn["product"]
            assert dict(zip(product_labels, product_counts, strict=True)) == per_product
            assert len(per_product) == 3
            assert set(drawn["deployment"]) == {"docker", "kubernetes", "source"}
            assert drawn["totals"]["installations"] == str(sum(per_os.values()))
            assert drawn["totals"]["active_1d"] == str(active_per_day[END.isoformat()])
            assert drawn["rows"] == len(days)
            assert drawn["pixels"] > 0
            assert errors == []

            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                await page.screenshot(path=str(SCREENSHOT), full_page=True)

            await page.reload()  # the token stays for this tab's session: no prompt again
            await page.wait_for_selector("body[data-loaded]")
            assert await page.is_hidden("#login")
        finally:
            await browser.close()
