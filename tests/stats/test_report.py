"""The report's numbers on a small known installed base, over SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from conftest import Store, beacon

from router.stats import Range

MARCH = Range(date(2025, 3, 1), date(2025, 3, 31))
LATER = date(2025, 5, 15)  # far enough after March that churn in March is known


def installed_base() -> list:
    """a: daily 1 to 10 March, upgrades 1.0.0 → 2.0.0 on the 5th; b: seen 20 Feb and 15 March;
    c: only 20 March, no deployment type; d: only 10 January."""
    events = [beacon(f"2025-03-{d:02d}", "a", "1.0.0") for d in range(1, 5)]
    events += [
        beacon("2025-03-05", "a", "1.0.0", at="08:00:00"),
        beacon("2025-03-05", "a", "2.0.0", at="20:00:00"),
    ]
    events += [beacon(f"2025-03-{d:02d}", "a", "2.0.0") for d in range(6, 11)]
    events += [
        beacon("2025-02-20", "b", "2.0.0", "darwin", "source"),
        beacon("2025-03-15", "b", "2.0.0", "darwin", "source"),
        beacon("2025-03-20", "c", "1.0.0", "linux", None),
        beacon("2025-01-10", "d", "0.9.0"),
    ]
    return events


def by_period(report: dict, key: str) -> dict[str, int]:
    return {p["period"]: p[key] for p in report["series"] if p[key]}


async def test_daily_report_counts_active_new_churned_and_last_values(store: Store):
    await store.add(installed_base())
    stats = store.stats(LATER)
    try:
        report = await stats.report(MARCH)
    finally:
        await stats.aclose()
    assert report["totals"] == {
        "installations": 3,
        "active_1d": 0,
        "active_7d": 0,
        "active_30d": 3,
        "new": 2,
        "churned": 3,
    }
    active = by_period(report, "active")
    assert active == {f"2025-03-{d:02d}": 1 for d in (*range(1, 11), 15, 20)}
    assert by_period(report, "new") == {"2025-03-01": 1, "2025-03-20": 1}  # b was seen in Feb
    assert by_period(report, "churned") == {"2025-03-10": 1, "2025-03-15": 1, "2025-03-20": 1}
    day15 = next(p for p in report["series"] if p["period"] == "2025-03-15")
    assert (day15["active_7d"], day15["active_30d"]) == (2, 2)  # a on the 9th and 10th, b
    assert report["breakdowns"] == {
        "version": [{"value": "2.0.0", "installations": 2}, {"value": "1.0.0", "installations": 1}],
        "platform.os": [
            {"value": "linux", "installations": 2},
            {"value": "darwin", "installations": 1},
        ],
        "deployment_type": [
            {"value": "(not set)", "installations": 1},
            {"value": "docker", "installations": 1},
            {"value": "source", "installations": 1},
        ],
    }
    versions = {p["period"]: p["counts"] for p in report["versions"]}
    assert versions["2025-03-04"] == {"1.0.0": 1}
    assert versions["2025-03-05"] == {"2.0.0": 1}  # the day's last beacon decides
    assert versions["2025-03-12"] == {}


async def test_weeks_start_on_monday_and_months_hold_the_whole_range(store: Store):
    await store.add(installed_base())
    stats = store.stats(LATER)
    try:
        weekly = await stats.report(Range(MARCH.start, MARCH.end, "week"))
        monthly = await stats.report(Range(MARCH.start, MARCH.end, "month"))
    finally:
        await stats.aclose()
    # 1 March 2025 is a Saturday: the first period is clipped to the range.
    assert [p["period"] for p in weekly["series"]] == [
        "2025-03-01",
        "2025-03-03",
        "2025-03-10",
        "2025-03-17",
        "2025-03-24",
        "2025-03-31",
    ]
    assert [p["active"] for p in weekly["series"]] == [1, 1, 2, 1, 0, 0]
    assert [p["new"] for p in weekly["series"]] == [1, 0, 0, 1, 0, 0]
    assert [p["churned"] for p in weekly["series"]] == [0, 0, 2, 1, 0, 0]
    assert weekly["versions"][1]["counts"] == {"2.0.0": 1}  # a's last version that week
    (month,) = monthly["series"]
    assert (month["active"], month["new"], month["churned"]) == (3, 2, 3)


async def test_churn_is_not_counted_before_its_silence_has_passed(store: Store):
    await store.add(installed_base())
    stats = store.stats(date(2025, 4, 12))  # 30 silent days after the 10th end on 9 April
    try:
        report = await stats.report(MARCH)
    finally:
        await stats.aclose()
    assert report["churn_known_until"] == "2025-03-12"
    assert by_period(report, "churned") == {"2025-03-10": 1}


async def test_an_installation_back_within_the_churn_window_has_not_churned(store: Store):
    await store.add([beacon("2025-03-01", "x"), beacon("2025-03-25", "x")])
    stats = store.stats(LATER)
    try:
        report = await stats.report(MARCH)
    finally:
        await stats.aclose()
    assert by_period(report, "churned") == {"2025-03-25": 1}


async def test_event_filter_counts_only_that_event(store: Store):
    await store.add(
        [
            beacon("2025-03-02", "a"),
            beacon("2025-03-02", "user-1", event="$pageview"),
            beacon("2025-03-03", "user-2", event="$pageview"),
        ]
    )
    stats = store.stats(LATER, "stats: {event: beacon}")
    everything = store.stats(LATER)
    try:
        assert (await stats.report(MARCH))["totals"]["installations"] == 1
        assert (await everything.report(MARCH))["totals"]["installations"] == 3
    finally:
        await stats.aclose()
        await everything.aclose()


async def test_configured_dimensions_read_nested_and_non_string_values(store: Store):
    await store.add(
        [
            beacon("2025-03-02", "a", counts={"users": "11-50"}, managed=True),
            beacon("2025-03-02", "b", counts={"users": 7}, managed=False),
            beacon("2025-03-02", "c"),
        ]
    )
    stats = store.stats(LATER, "stats: {dimensions: [counts.users, managed]}")
    try:
        report = await stats.report(MARCH)
    finally:
        await stats.aclose()
    assert report["breakdowns"] == {
        "counts.users": [
            {"value": "(not set)", "installations": 1},
            {"value": "11-50", "installations": 1},
            {"value": "7", "installations": 1},
        ],
        "managed": [
            {"value": "(not set)", "installations": 1},
            {"value": "false", "installations": 1},
            {"value": "true", "installations": 1},
        ],
    }
    assert "versions" not in report  # no version dimension configured


async def test_new_rows_and_deleted_days_are_picked_up_on_the_next_report(store: Store):
    await store.add([beacon("2025-03-02", "a"), beacon("2025-03-03", "b")])
    stats = store.stats(LATER)
    try:
        assert (await stats.report(MARCH))["totals"]["installations"] == 2
        await store.add([beacon("2025-03-02", "c")])  # a late delivery into a cached day
        assert (await stats.report(MARCH))["totals"]["installations"] == 3
        await store.execute("DELETE FROM {table} WHERE distinct_id = 'b'")  # e.g. retention
        report = await stats.report(MARCH)
        assert report["totals"]["installations"] == 2
        assert by_period(report, "active") == {"2025-03-02": 2}
    finally:
        await stats.aclose()


async def test_recent_days_are_rechecked_often_and_older_ones_on_the_full_check(store: Store):
    today = date(2025, 3, 31)
    await store.add([beacon("2025-03-01", "a"), beacon("2025-03-30", "b")])
    stats = store.stats(today, recheck=0, full_recheck=3600)
    try:
        assert (await stats.report(MARCH))["totals"]["installations"] == 2
        await store.add([beacon("2025-03-01", "late"), beacon("2025-03-29", "recent")])
        assert by_period(await stats.report(MARCH), "active") == {
            "2025-03-01": 1,
            "2025-03-29": 1,
            "2025-03-30": 1,
        }  # the old day is not looked at
        await stats.index.refresh(today, force=True)
        assert (await stats.report(MARCH))["totals"]["installations"] == 4
    finally:
        await stats.aclose()


async def test_an_empty_or_missing_store_reports_zeros(store: Store):
    stats = store.stats(LATER)
    try:
        report = await stats.report(MARCH)
    finally:
        await stats.aclose()
    assert set(report["totals"].values()) == {0}
    assert len(report["series"]) == 31
    assert report["breakdowns"]["version"] == []


@pytest.mark.parametrize(
    ("start", "end", "granularity", "why"),
    [
        ("2025-03-10", "2025-03-01", None, "after"),
        ("2022-01-01", "2025-03-01", None, "at most"),
        ("yesterday", None, None, "YYYY-MM-DD"),
        (None, None, "hour", "granularity"),
    ],
)
def test_bad_ranges_are_refused_with_the_reason(start, end, granularity, why):
    from router.errors import BadRange

    with pytest.raises(BadRange, match=why):
        Range.parse(start, end, granularity, LATER)


def test_default_range_is_the_last_30_days_ending_today():
    assert Range.parse(None, None, None, LATER) == Range(date(2025, 4, 16), LATER, "day")
