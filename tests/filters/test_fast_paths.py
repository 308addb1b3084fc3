"""The pipeline's fast paths decide exactly as the general code they skip (bench/README.md)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config.loader import loads
from router.event import Event, delete_path, split_path
from router.filters import Pipeline
from router.filters.fields import Drop, FieldsOptions
from router.filters.round_time import RoundTime, RoundTimeOptions, parse_time
from router.filters.wildcard import expand
from router.speedups import _built

STEPS = ["1s", "1m", "15m", "1h", "6h", "1d"]


def _general_floor(round_time: RoundTime, value: str) -> str | None:
    """round_time's answer through parse_time and a datetime, as before the text fast path."""
    dt = parse_time(value)
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    s = dt.hour * 3600 + dt.minute * 60 + dt.second
    s -= s % round_time._seconds
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
            f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z")


@settings(max_examples=400)
@given(moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
       to=st.sampled_from(STEPS))
def test_round_time_of_utc_text_equals_the_datetime_path(moment: datetime, to: str) -> None:
    value = moment.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0")
    round_time = RoundTime(RoundTimeOptions(to=to))  # type: ignore[arg-type]
    assert round_time.floor(value) == _general_floor(round_time, value)


@settings(max_examples=400)
@given(value=st.text(alphabet="0123456789-T:Z ٣x", min_size=20, max_size=20),
       to=st.sampled_from(STEPS))
def test_round_time_of_text_that_only_looks_like_a_time(value: str, to: str) -> None:
    round_time = RoundTime(RoundTimeOptions(to=to))  # type: ignore[arg-type]
    assert round_time.floor(value) == _general_floor(round_time, value)


def _c_and_python_floor(value: str, to: str) -> tuple[str | None, str | None]:
    """round_time's common-text floor in C (router/_speedups.c) and in Python, side by side."""
    round_time = RoundTime(RoundTimeOptions(to=to))  # type: ignore[arg-type]
    python = None
    if len(value) == 20 and value[19] == "Z" and value.isascii():
        python = round_time._floor_utc_text(value)
    return _built.floor_utc_text(value, round_time._seconds), python


@settings(max_examples=400)
@given(moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
       to=st.sampled_from(STEPS),
       noise=st.text(alphabet="0123456789-T:Z ٣x", min_size=20, max_size=20))
def test_round_time_in_c_floors_as_the_python_twin(moment: datetime, to: str, noise: str) -> None:
    if _built is None:
        pytest.skip("router/_speedups.c not built")
    value = moment.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0")
    c, python = _c_and_python_floor(value, to)
    assert c == python == _general_floor(RoundTime(RoundTimeOptions(to=to)), value)  # type: ignore[arg-type]
    c, python = _c_and_python_floor(noise, to)
    assert c == python


def test_round_time_in_c_refuses_what_is_not_the_common_text() -> None:
    if _built is None:
        pytest.skip("router/_speedups.c not built")
    for other in (None, 1732752000, b"2025-11-28T10:00:00Z", "2025-11-28T10:00:00+00:00",
                  "2025-11-28T10:00:00.5Z", "2025-11-28 10:00:00Z", "0000-01-01T00:00:00Z",
                  "2024-02-29T10:00:00Z\n", "\uff12025-11-28T10:00:00Z"):
        assert _built.floor_utc_text(other, 3600) is None, other
    assert _built.floor_utc_text("2024-02-29T23:59:59Z", 86400) == "2024-02-29T00:00:00Z"
    assert _built.floor_utc_text("2023-02-29T23:59:59Z", 60) is None  # not a leap year
    assert _built.floor_utc_text("2000-02-29T23:59:59Z", 60) == "2000-02-29T23:59:00Z"
    assert _built.floor_utc_text("1900-02-29T23:59:59Z", 60) is None
    for bad_step in (0, -1, 7, 86401):
        with pytest.raises(ValueError):
            _built.floor_utc_text("2024-02-29T23:59:59Z", bad_step)


def test_round_time_fast_path_refuses_what_parse_time_refuses() -> None:
    round_time = RoundTime(RoundTimeOptions(to="1h"))  # type: ignore[arg-type]
    for bad in ("2025-02-30T10:00:00Z", "2025-11-28T24:00:00Z", "2025-11-28T10:60:00Z",
                "2025-11-28T10:00:61Z", "2025-1a-28T10:00:00Z"):
        assert round_time.floor(bad) is None
    assert round_time.floor("2025-11-28T10:59:59Z") == "2025-11-28T10:00:00Z"


json_keys = st.sampled_from(["a", "b", "c", "hostname", "email", "ip"])
json_docs = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: st.dictionaries(json_keys, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300)
@given(doc=st.dictionaries(json_keys, json_docs, max_size=5),
       fields=st.lists(st.sampled_from(["hostname", "email", "a.b", "b.0", "c.hostname",
                                        "*.hostname", "c.*", "a.*.b"]),
                       min_size=1, max_size=4))
def test_drop_equals_deleting_each_path(doc: dict, fields: list[str]) -> None:
    expected = Event.new(copy.deepcopy(doc)).data
    for field in fields:
        for path in list(expand(expected, split_path(field))):
            delete_path(expected, path)
    event = Drop(FieldsOptions(fields=fields))(Event.new(copy.deepcopy(doc)))
    assert event is not None and event.data == expected


def test_a_source_condition_is_decided_per_source_as_per_event() -> None:
    pipeline = Pipeline(loads(
        "spool: {type: sqlite, path: ./data/spool.db}\n"
        "pipeline:\n"
        "  - {type: set, fields: {seen: 1}, when: {source: beacon}}\n"
        "  - {type: set, fields: {other: 2}, when: {source: [posthog, x]}}\n"
        "  - {type: set, fields: {always: 3}}\n"
        "backends: {a: {type: file, path: ./data/a.jsonl}}\n", "t.yaml").pipeline)
    for _ in range(2):  # the second time from the per-source cache
        beacon = pipeline(Event.new({}, source="beacon"))
        posthog = pipeline(Event.new({}, source="posthog"))
        other = pipeline(Event.new({}, source="elsewhere"))
        assert beacon is not None and beacon.data == {"seen": 1, "always": 3}
        assert posthog is not None and posthog.data == {"other": 2, "always": 3}
        assert other is not None and other.data == {"always": 3}
    explained, why = pipeline.explain(Event.new({}, source="posthog"))
    assert explained is not None and explained.data == {"other": 2, "always": 3} and why is None
