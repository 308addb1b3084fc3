"""The batch path's one-loop decoding gives exactly what the per-event reference gives.

``_v0_events`` (router/ingest/posthog.py) inlines, for speed, what ``_v0_event`` does for one
event, in C for a batch of plain SDK events (router/_speedups.c) and in Python otherwise; the
reference is kept straightforward and both forms are compared with it here on random events:
the same events (name, data, uuid, key order), the same tokens, the same first error.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import InputError
from router.ingest import Limits
from router.ingest.posthog import Captured, _v0_event, _v0_events, _v0_events_loop, decode_v0
from router.speedups import speedups

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
values = (st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
          | st.sampled_from(["", " ", "u1", "phc_x", "2025-11-28T00:10:11Z"])
          | st.lists(st.integers(0, 3), max_size=2)
          | st.dictionaries(st.sampled_from(["a", "$b"]), st.integers(0, 3), max_size=2))
KEYS = ["event", "properties", "distinct_id", "$distinct_id", "api_key", "token", "$token",
        "timestamp", "offset", "$set", "$set_once", "uuid", "other"]
PROPERTY_KEYS = ["token", "$token", "$ip", "distinct_id", "$set", "$set_once", "$lib", "n"]
properties = st.dictionaries(st.sampled_from(PROPERTY_KEYS), values, max_size=5)
# Mostly valid SDK events, with any of the fields replaced or added now and then, so that both
# the accepted path and each error are reached.
valid = st.fixed_dictionaries(
    {"event": st.just("e"), "distinct_id": st.sampled_from(["u1", "u2"]),
     "properties": properties},
    optional={"timestamp": st.just("2025-11-28T00:10:11Z"), "uuid": st.just("u-1"),
              "$set": st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2)})
events = st.tuples(valid, st.dictionaries(st.sampled_from(KEYS), values | properties,
                                          max_size=3)).map(lambda pair: {**pair[0], **pair[1]})


def reference(docs: list[dict[str, Any]], engage: bool, envelope: bool) -> Any:
    try:
        decoded = [_v0_event(item, i, engage, NOW) for i, item in enumerate(docs)]
    except InputError as exc:
        return type(exc), exc.detail
    tokens = None if envelope else {token for _, token in decoded if token}
    return [_shape(event) for event, _ in decoded], tokens


def fast(docs: list[dict[str, Any]], engage: bool, envelope: bool, loop: Any = _v0_events
         ) -> Any:
    tokens: set[str] | None = None if envelope else set()
    try:
        found = loop(docs, engage, NOW, tokens)
    except InputError as exc:
        return type(exc), exc.detail
    return [_shape(event) for event in found], tokens


def _shape(event: Captured) -> Any:
    # key order too: it is the order the event's JSON is spooled in
    return event.name, list(event.data.items()), event.uuid


@settings(max_examples=600)
@given(docs=st.lists(events, min_size=1, max_size=4), engage=st.booleans(),
       envelope=st.booleans())
def test_the_batch_loop_decodes_as_the_reference(docs: list[dict[str, Any]], engage: bool,
                                                 envelope: bool) -> None:
    expected = reference(copy.deepcopy(docs), engage, envelope)
    assert fast(copy.deepcopy(docs), engage, envelope) == expected  # in C where it can
    assert fast(copy.deepcopy(docs), engage, envelope, _v0_events_loop) == expected  # Python
    if speedups is not None and envelope and not engage:
        # the C decodes a batch whole or not at all, and never edits what it gives back
        kept = copy.deepcopy(docs)
        found = speedups.v0_events(kept, Captured)
        assert kept == docs
        if found is not None:
            assert [_shape(e) for e in found] == expected[0]
            assert all(type(e) is Captured for e in found)


# What an SDK sends in a batch with its own token: nothing to scrub, no person updates.
plain = st.fixed_dictionaries(
    {"event": st.sampled_from(["e", " $pageview", "é"]),
     "distinct_id": st.sampled_from(["u1", " u2 ", "\u00a0x"]),
     "timestamp": st.sampled_from(["2025-11-28T00:10:11Z", ""]),
     "properties": st.dictionaries(st.sampled_from(["$lib", "n", "distinct_id"]), values,
                                   max_size=3) | st.none()},
    optional={"uuid": st.sampled_from(["u-1", None, 7]), "offset": values, "other": values})


@settings(max_examples=300)
@given(docs=st.lists(plain, min_size=1, max_size=4))
def test_a_batch_of_plain_sdk_events_is_decoded_in_c(docs: list[dict[str, Any]]) -> None:
    if speedups is None:
        pytest.skip("router/_speedups.c not built (or BEACON_ROUTER_PURE_PYTHON)")
    found = speedups.v0_events(copy.deepcopy(docs), Captured)
    assert found is not None
    assert [_shape(e) for e in found] == reference(copy.deepcopy(docs), False, True)[0]


def test_an_sdk_batch_keeps_every_event_and_field_in_order() -> None:
    # posthog-python's shape, one event sent twice: both kept (never deduplicated here).
    event = ('{"event":"e","distinct_id":"d","uuid":"00000007-0001-4001-8007-000000000001",'
             '"timestamp":"2025-11-28T00:10:11Z","properties":{"$lib":"posthog-python",'
             '"token":"phc_secret","$ip":"10.0.0.1","n":1}}')
    body = ('{"api_key":"phc_x","batch":[' + ",".join([event] * 2) + "]}").encode()
    capture = decode_v0(body, query={}, content_type="application/json", engage=False,
                        now=NOW, limits=Limits())
    assert capture.tokens == frozenset({"phc_x"})
    assert [tuple(c) for c in capture.events] == [(
        "e", {"distinct_id": "d", "properties": {"$lib": "posthog-python", "n": 1},
              "timestamp": "2025-11-28T00:10:11Z"},
        "00000007-0001-4001-8007-000000000001")] * 2
    assert list(capture.events[0].data) == ["distinct_id", "properties", "timestamp"]


def test_a_uuid_that_is_a_str_subclass_is_kept_by_the_c_as_by_the_loop() -> None:
    # Found by bench/fuzz/fuzz_speedups.py (bench/fuzz/crashes/speedups/): the loop keeps any
    # str as the uuid (isinstance), the C kept only an exact str and gave None for a subclass.
    # A JSON decoder makes no subclass; a caller in Python could.
    if speedups is None:
        pytest.skip("router/_speedups.c not built (or BEACON_ROUTER_PURE_PYTHON)")

    class Text(str):
        pass

    docs = [{"event": "e", "distinct_id": "u1", "timestamp": "2025-11-28T00:10:11Z",
             "properties": {}, "uuid": Text("u-2")}]
    found = speedups.v0_events(copy.deepcopy(docs), Captured)
    expected = _v0_events_loop(copy.deepcopy(docs), False, NOW, None)
    assert found is not None
    assert [_shape(e) for e in found] == [_shape(e) for e in expected]
    assert type(found[0].uuid) is Text and found[0].uuid == "u-2"


class _Collider:
    """A dict key with the hash of a key the C looks up, whose __eq__ (run inside that lookup)
    empties a container of the batch and then fills the freed memory with other strings."""

    def __init__(self, target: str, victim: Any) -> None:
        self.target, self.victim, self.armed = target, victim, False
        self.litter: list[str] = []

    def __hash__(self) -> int:
        return hash(self.target)

    def __eq__(self, other: object) -> bool:
        if self.armed and self.victim:
            self.victim.clear()
            self.litter = [f"litter {i}" for i in range(200)]
        return False


@pytest.mark.parametrize("target", ["distinct_id", "uuid", "$set", "$set_once"])
@pytest.mark.parametrize("victim", ["event", "batch"])
def test_a_key_whose_eq_empties_the_batch_cannot_free_what_the_c_holds(target: str,
                                                                       victim: str) -> None:
    # Found by bench/fuzz/fuzz_speedups.py under AddressSanitizer (bench/fuzz/crashes/speedups/):
    # the C borrowed the event's values and the batch's items, and a lookup that ran such a
    # key's __eq__ freed them: a use after free. Now it holds them (or leaves a batch that
    # changed under it to the loop). No JSON decoder makes such a key; Python code could.
    if speedups is None:
        pytest.skip("router/_speedups.c not built (or BEACON_ROUTER_PURE_PYTHON)")
    name, distinct_id = "".join(["ev", "ent 1"]), "".join(["us", "er 1"])  # held by the batch only
    raw: dict[Any, Any] = {"event": name, "distinct_id": distinct_id,
                           "timestamp": "".join(["2025-11-28T00:10:11", "Z"]),
                           "properties": {"n": 1}}
    docs: list[Any] = [raw, {"event": "e", "distinct_id": "u", "timestamp": ""}]
    collider = _Collider(target, raw if victim == "event" else docs)
    raw[collider] = 1
    del name, distinct_id, raw
    collider.armed = True
    found = speedups.v0_events(docs, Captured)
    collider.armed = False
    if found is not None:  # then taken whole, from what the batch held at the start
        assert [(e.name, e.data["distinct_id"], e.data["timestamp"], e.data["properties"])
                for e in found[:1]] == [("event 1", "user 1", "2025-11-28T00:10:11Z", {"n": 1})]
        assert all(type(e) is Captured for e in found)
