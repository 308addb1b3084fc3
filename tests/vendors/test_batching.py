"""The vendors' shared machinery: the event view, and cutting batches within limits."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.backends.analytics import VendorOptions, to_analytics
from router.backends.vendor import Unit, cut
from router.errors import Unmappable
from router.event import Event

OPTIONS = VendorOptions()


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300), max_size=60),
    companions=st.lists(st.booleans(), max_size=60),
    max_events=st.one_of(st.none(), st.integers(min_value=2, max_value=10)),
    max_bytes=st.integers(min_value=700, max_value=3000),
)
def test_cut_keeps_order_and_every_part_fits_both_limits(sizes, companions, max_events, max_bytes):
    envelope = {"batch": []}
    overhead = len(orjson.dumps(envelope))
    units = []
    for i, size in enumerate(sizes):
        bodies = [{"p": "x" * size}]
        if i < len(companions) and companions[i]:
            bodies.append({"c": i})
        units.append(Unit.of(i, *bodies))

    parts = cut(units, max_events=max_events, max_bytes=max_bytes, overhead=overhead)

    assert [u.index for part in parts for u in part] == list(range(len(units)))
    for part in parts:
        bodies = [b for u in part for b in u.bodies]
        encoded = len(orjson.dumps({"batch": bodies}))  # the bytes that would be sent
        assert len(part) == 1 or encoded <= max_bytes
        assert len(part) == 1 or max_events is None or len(bodies) <= max_events


def test_cut_fills_requests_greedily_to_the_byte():
    units = [Unit.of(i, {"p": "x" * 10}) for i in range(4)]
    overhead = len(orjson.dumps([]))
    exact = overhead + 2 * units[0].size + 1  # two bodies and a comma

    parts = cut(units, max_events=None, max_bytes=exact, overhead=overhead)

    assert [[u.index for u in p] for p in parts] == [[0, 1], [2, 3]]
    assert len(orjson.dumps([u.bodies[0] for u in parts[0]])) == exact


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-28T00:00:03Z", "2026-11-28T00:00:03.000Z"),
        ("2026-11-28T01:00:03+01:00", "2026-11-28T00:00:03.000Z"),
        ("2026-11-28T00:00:03", "2026-11-28T00:00:03.000Z"),  # naive means UTC
        ("not a time", "2026-11-28T00:00:04.250Z"),  # falls back to received_at
        (1795824003, "2026-11-28T00:00:04.250Z"),
    ],
)
def test_beacon_time_is_its_timestamp_in_utc_else_received_at(timestamp, expected):
    event = Event.new(
        {"installation_id": "i-1", "timestamp": timestamp}, received_at="2026-11-28T00:00:04.250Z"
    )

    assert to_analytics(event, OPTIONS).iso_time == expected


@pytest.mark.parametrize(("value", "expected"), [(42, "42"), ("abc", "abc"), (1.5, "1.5")])
def test_scalar_ids_become_strings(value, expected):
    assert to_analytics(Event.new({"installation_id": value}), OPTIONS).distinct_id == expected


@pytest.mark.parametrize("value", [None, "", "  ", True, {"a": 1}, ["a"]])
def test_unusable_ids_make_the_event_unmappable(value):
    with pytest.raises(Unmappable, match="no usable distinct id at 'installation_id'"):
        to_analytics(Event.new({"installation_id": value}), OPTIONS)


def test_forwarded_event_keeps_its_own_name_id_and_timestamp_string():
    event = Event.new(
        {
            "distinct_id": "u-1",
            "timestamp": "2026-11-27T10:00:00+00:00",
            "properties": {"a": 1},
            "$set_once": {"b": 2},
        },
        name="clicked",
        source="posthog",
    )

    view = to_analytics(event, VendorOptions(event="ignored", distinct_id="ignored"))

    assert (view.name, view.distinct_id, view.client_timestamp) == (
        "clicked",
        "u-1",
        "2026-11-27T10:00:00+00:00",
    )
    assert view.properties == {"a": 1} and view.set_once == {"b": 2} and view.set is None
    assert view.millis == 1795773600000
