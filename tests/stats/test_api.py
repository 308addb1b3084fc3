"""/api/stats, /dashboard and /public/stats through the router's real app on a loopback port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Store, beacon
from support import REPO

from router.config.loader import loads
from router.event import Event, set_path
from router.sources import RequestFacts
from router.web.admin import create_admin_app
from router.web.app import create_app

TOKEN = "a-long-admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_SAME_PORT = f"admin: {{token: {TOKEN}, listen: same}}"  # admin pages on the ingest app


def config_text(tmp_path: Path, extra: str = "") -> str:
    return f"""
spool: {{path: "{tmp_path / "spool.db"}"}}
backends:
  archive: {{type: store, url: "sqlite:///{tmp_path / "beacons.db"}"}}
{extra}
"""


@pytest.fixture
def client_for(tmp_path, aiohttp_client):
    """``await client_for(extra_yaml)``: a test client of the router with that config."""

    async def make(extra: str = ""):
        return await aiohttp_client(create_app(loads(config_text(tmp_path, extra))))

    return make


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


async def test_everything_is_404_while_no_admin_token_and_no_public_flag(client_for):
    client = await client_for("stats: {public: false}")
    for path in ("/api/stats", "/dashboard", "/dashboard/static/dashboard.js", "/public/stats"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404, path
        assert (await resp.json())["error"] == "not_found"


async def test_an_empty_admin_token_variable_leaves_the_api_off(client_for):
    client = await client_for('admin: {token: ""}')
    assert (await client.get("/api/stats", headers={"Authorization": "Bearer "})).status == 404


async def test_admin_pages_live_on_the_admin_listener_not_the_ingest_port(
    sqlite_store: Store, tmp_path, aiohttp_client
):
    await sqlite_store.add([beacon(days_ago(1), "a")])
    ingest_app = create_app(loads(config_text(tmp_path, f"admin: {{token: {TOKEN}}}")))
    ingest = await aiohttp_client(ingest_app)  # started: its statistics exist now
    admin = await aiohttp_client(create_admin_app(ingest_app))
    for path in ("/api/stats", "/dashboard"):
        assert (await ingest.get(path, headers=AUTH)).status == 404, path
        assert (await admin.get(path, headers=AUTH)).status == 200, path
    report = await (await admin.get("/api/stats", headers=AUTH)).json()
    assert report["totals"]["installations"] == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
async def test_api_stats_refuses_a_missing_or_wrong_token(client_for, header):
    client = await client_for(ADMIN_SAME_PORT)
    resp = await client.get("/api/stats", headers={"Authorization": header} if header else {})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"] == "unauthorized"


async def test_api_stats_answers_the_report_for_the_range_asked(sqlite_store: Store, client_for):
    await sqlite_store.add(
        [
            beacon("2025-03-02", "a", "1.0.0"),
            beacon("2025-03-03", "b", "2.0.0"),
            beacon("2025-03-09", "b", "2.0.0"),
        ]
    )
    client = await client_for(ADMIN_SAME_PORT)
    resp = await client.get(
        "/api/stats?from=2025-03-01&to=2025-03-14&granularity=week", headers=AUTH
    )
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    report = await resp.json()
    assert (report["from"], report["to"], report["granularity"]) == (
        "2025-03-01",
        "2025-03-14",
        "week",
    )
    assert [(p["period"], p["active"]) for p in report["series"]] == [
        ("2025-03-01", 1),
        ("2025-03-03", 1),
        ("2025-03-10", 0),
    ]
    assert report["breakdowns"]["version"] == [
        {"value": "1.0.0", "installations": 1},
        {"value": "2.0.0", "installations": 1},
    ]


async def test_api_stats_dimension_parameter_selects_the_breakdowns(client_for):
    client = await client_for(ADMIN_SAME_PORT)
    resp = await client.get("/api/stats?dimension=platform.os&dimension=version", headers=AUTH)
    assert set((await resp.json())["breakdowns"]) == {"platform.os", "version"}
    resp = await client.get("/api/stats?dimension=deployment_type", headers=AUTH)
    assert set((await resp.json())["breakdowns"]) == {"deployment_type"}


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("from=2025-03-10&to=2025-03-01", "after"),
        ("from=march", "YYYY-MM-DD"),
        ("granularity=year", "granularity"),
        ("dimension=hostname", "unknown dimension 'hostname'"),
    ],
)
async def test_api_stats_says_what_is_wrong_with_a_bad_query(client_for, query, detail):
    client = await client_for(ADMIN_SAME_PORT)
    resp = await client.get(f"/api/stats?{query}", headers=AUTH)
    assert resp.status == 400
    assert detail in (await resp.json())["detail"]


async def test_an_unreadable_store_is_a_503_with_retry_after(tmp_path, client_for):
    (tmp_path / "beacons.db").write_bytes(b"this is not a SQLite database, not at all" * 100)
    client = await client_for(ADMIN_SAME_PORT)
    resp = await client.get("/api/stats", headers=AUTH)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "10"
    assert (await resp.json())["error"] == "store_unavailable"


async def test_dashboard_page_and_its_scripts_are_served_with_a_strict_policy(client_for):
    client = await client_for(ADMIN_SAME_PORT)
    page = await client.get("/dashboard")  # no token: the page holds no data
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="dashboard/static/dashboard.js"' in await page.text()
    for name in ("dashboard.js", "chart.umd.min.js"):
        resp = await client.get(f"/dashboard/static/{name}")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/javascript")
    for name in ("README.md", "LICENSE-chart.js.md", "..%2Fapi.py", "dashboard.html"):
        assert (await client.get(f"/dashboard/static/{name}")).status == 404, name


async def seed_public(store: Store) -> None:
    """Yesterday: 12 linux/docker on 2.0.0, 4 darwin and 3 windows on an odd version string."""
    yesterday = days_ago(1)
    events = [beacon(yesterday, f"l{i}", "2.0.0", "linux", "docker") for i in range(12)]
    events += [
        beacon(yesterday, f"d{i}", "<script>x</script>", "darwin", "source") for i in range(4)
    ]
    events += [
        beacon(yesterday, f"w{i}", "<script>x</script>", "windows", "source") for i in range(3)
    ]
    await store.add(events)


async def test_public_stats_shows_only_k_anonymous_buckets_of_public_dimensions(
    sqlite_store: Store, client_for
):
    await seed_public(sqlite_store)
    client = await client_for("stats: {public: true, k: 5, public_dimensions: [platform.os]}")
    resp = await client.get("/public/stats")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert body["k"] == 5 and body["to"] == days_ago(1)
    assert body["active"] == {"1d": 19, "7d": 19, "30d": 19}
    assert body["breakdowns"] == {
        "platform.os": [
            {"value": "linux", "installations": 12},
            {"value": "other", "installations": 7},
        ]
    }
    assert (await client.get("/api/stats", headers=AUTH)).status == 404  # admin still off


async def test_public_stats_page_escapes_values_from_beacons(sqlite_store: Store, client_for):
    await seed_public(sqlite_store)
    client = await client_for("stats: {public: true, k: 5}")
    resp = await client.get("/public/stats", headers={"Accept": "text/html,*/*;q=0.8"})
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = await resp.text()
    assert "&lt;script&gt;x&lt;/script&gt;" in page  # 7 installations: shown, escaped
    assert "<script" not in page
    assert ">12<" in page and ">7<" in page
    assert (
        (await client.get("/public/stats?format=json"))
        .headers["Content-Type"]
        .startswith("application/json")
    )


async def test_public_stats_are_computed_once_per_cache_period(sqlite_store: Store, client_for):
    await seed_public(sqlite_store)
    client = await client_for("stats: {public: true, k: 5, cache: 1h}")
    first = await (await client.get("/public/stats")).json()
    await sqlite_store.add([beacon(days_ago(1), f"n{i}", "3.0.0") for i in range(20)])
    resp = await client.get("/public/stats")
    assert resp.headers["Cache-Control"] == "public, max-age=3600"
    assert await resp.json() == first


async def test_public_stats_below_k_show_no_number(sqlite_store: Store, client_for):
    await sqlite_store.add([beacon(days_ago(1), f"i{i}") for i in range(3)])
    client = await client_for("stats: {public: true}")
    body = await (await client.get("/public/stats")).json()
    assert body["active"] == {"1d": None, "7d": None, "30d": None}
    assert all(buckets == [] for buckets in body["breakdowns"].values())


async def test_installations_are_counted_per_product_of_the_source_profiles(
    sqlite_store: Store, client_for, monkeypatch
):
    """Beacons as the shipped profiles map them (GitLab's `uuid`, Nextcloud's `instance_id`, …
    become installation_id, each event carries its product): the API, the dashboard's report and
    the public page break the installed base down by product."""
    monkeypatch.chdir(REPO)
    profiles = loads("sources: {include: [config/sources/*.yaml]}\n").profiles
    sent = {"gitlab": ("uuid", 3), "nextcloud": ("instance_id", 2),
            "docker": ("installation_id", 1), "kubernetes": ("cluster_info.cluster_uid", 1)}
    events = []
    for product, (field, installations) in sent.items():
        for i in range(installations):
            for hour in ("08", "12"):  # two beacons each: still one installation
                data: dict[str, Any] = {"version": "1.0"}
                set_path(data, field, f"{product}-{i}")
                profiles.by_name[product].map(data, RequestFacts())
                events.append(Event.new(data, received_at=f"{days_ago(1)}T{hour}:00:00.000Z"))
    await sqlite_store.add(events)
    client = await client_for(ADMIN_SAME_PORT + "\nstats: {public: true, k: 2, "
                                                "dimensions: [product, version]}")
    report = await (await client.get("/api/stats", params={"dimension": "product"},
                                     headers=AUTH)).json()
    assert report["breakdowns"]["product"] == [
        {"value": "gitlab", "installations": 3}, {"value": "nextcloud", "installations": 2},
        {"value": "docker", "installations": 1}, {"value": "kubernetes", "installations": 1}]
    public = await (await client.get("/public/stats")).json()
    assert public["breakdowns"]["product"] == [
        {"value": "gitlab", "installations": 3}, {"value": "nextcloud", "installations": 2},
        {"value": "other", "installations": 2}]  # fewer than k each: not shown by name
