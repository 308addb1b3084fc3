"""redact's pre-check, in both its forms: the C walk over the decoded event (setup.py builds it
where a compiler is) and the pure-Python scan of its JSON text (the fallback). Each may say
"maybe" more often than the other; neither may ever say "nothing" where the walk would replace
something."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import REPO

from router.event import Event
from router.filters import redact
from router.filters.redact import Redact, RedactOptions, nothing_to_redact_text
from router.speedups import _built

# the C function whether or not BEACON_ROUTER_PURE_PYTHON switched it off for the router
nothing_to_redact_c = _built.nothing_to_redact if _built is not None else None

PreCheck = Callable[[Any], bool]
PRE_CHECKS = [pytest.param(nothing_to_redact_text, id="python"),
              pytest.param(nothing_to_redact_c, id="c", marks=pytest.mark.skipif(
                  nothing_to_redact_c is None, reason="router/_speedups.c not built "
                                                      "(no C compiler at install time)"))]

BEACON = {"installation_id": "5eed0000-0001-4a1e-9f3c-000000000001", "version": "2.4.1",
          "platform": {"os": "linux", "os_version": "Ubuntu 22.04"},
          "timestamp": "2025-11-28T00:10:11Z", "counts": {"users": 12, "ratio": 0.5}}
LEAKS = ["admin@example.com", "https://ops.example.com/x", "10.0.0.1", "fe80::1", "::1",
         "2001:db8:0:0:0:0:0:1", "٣.٣.٣.٣", "::ffff:10.0.0.1", "1::"]


@pytest.mark.parametrize("pre_check", PRE_CHECKS)
def test_a_typical_beacon_is_spared_and_each_pattern_caught(pre_check: PreCheck) -> None:
    assert pre_check(BEACON)
    for leak in LEAKS:
        for where in ({**BEACON, "note": f"seen {leak}"},
                      {**BEACON, "deep": [{"list": ["x", f"{leak} seen"]}]}):
            assert not pre_check(where), leak
            assert leak not in orjson.dumps(Redact(RedactOptions())(Event.new(where)).data).decode()


@pytest.mark.parametrize("pre_check", PRE_CHECKS)
def test_an_sdk_event_whose_dots_are_far_apart_is_spared(pre_check: PreCheck) -> None:
    # A PostHog SDK's event: two version strings, four dots, none three in a row close enough
    # for an address; the pre-check spares it the walk (and a near miss is still caught).
    event = {"distinct_id": "d" * 64, "timestamp": "2025-11-28T00:01:02Z",
             "properties": {"version": "2.4.3", "platform": "linux", "users": 3,
                            "$lib": "posthog-python", "$lib_version": "3.7.0"}}
    assert pre_check(event)
    assert not pre_check({**event, "note": "v2.4.3.x"})  # three dots, each 1 apart: maybe


@pytest.mark.parametrize("pre_check", PRE_CHECKS)
def test_wide_strings_are_read_as_characters(pre_check: PreCheck) -> None:
    # CPython keeps a string in 1, 2 or 4 bytes a character: each width is its own loop in C.
    for wide in ("é", "€", "\U0001f600"):
        assert pre_check({"name": f"{wide} caf{wide} 1.2.3"})
        for leak in ("a@b.io", "x://y", "fe80::1", "1:2:3:4:5:6:7:8", "1.2.3.4", "٣.٣.٣.٣"):
            assert not pre_check({"name": f"{wide}{leak}{wide}"}), (wide, leak)


def test_the_c_walk_says_maybe_for_what_it_does_not_know() -> None:
    # Subclasses, tuples, other objects and very deep nesting are the Python walk's to decide.
    if nothing_to_redact_c is None:
        pytest.skip("router/_speedups.c not built")

    class Text(str):
        pass

    assert nothing_to_redact_c({"a": [1, 2.5, True, None, "x", {"b": "y"}]})
    for odd in (Text("x"), ("x",), b"x", object()):
        assert not nothing_to_redact_c({"a": odd}), odd
    assert not nothing_to_redact_c("a string")
    nested: list[Any] = ["x"]
    for depth in range(100):
        nested = [nested]
        # the C walk goes 64 levels deep, then leaves the rest to the Python walk
        assert nothing_to_redact_c({"deep": nested}) is (depth < 63), depth
    # keys are never redacted, so they are not looked at
    assert nothing_to_redact_c({"admin@example.com": 1})


def test_the_filter_answers_the_same_with_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every product's real payload, redacted with whichever pre-check this install has and with
    # the pure-Python one: the same data.
    fixtures = sorted((Path(REPO) / "tests" / "fixtures" / "reference").glob("*.json"))
    assert fixtures
    payloads = [orjson.loads(path.read_bytes()) for path in fixtures]
    payloads += [{**BEACON, "note": leak} for leak in LEAKS]
    native = [Redact(RedactOptions())(Event.new(copy.deepcopy(p))).data for p in payloads]
    monkeypatch.setattr(redact, "nothing_to_redact", nothing_to_redact_text)
    fallback = [Redact(RedactOptions())(Event.new(copy.deepcopy(p))).data for p in payloads]
    assert native == fallback


# --- property: "nothing" only where the walk changes nothing ---

# Strings built from what the patterns look for: digits (ASCII, and Unicode digits of 2 and 4
# UTF-8 bytes, which `\d` takes), hex letters, dots, colons, @, slashes, quotes, backslashes.
_pieces = st.sampled_from(
    ["1", "7", "25", "192", "٣", "\U0001d7d8", "a", "F", "ff", ".", ":", "::", "@", "/", "://", "x",
     " ", '"', "\\", "http", "example", ".com", "10.0.0.1", "fe80::1", "a@b.io", "é", "€"]
)
_strings = st.lists(_pieces, max_size=12).map("".join)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_strings, inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("pre_check", PRE_CHECKS)
@given(data=st.dictionaries(_strings, _values, max_size=6))
def test_nothing_only_when_the_walk_changes_nothing(pre_check: PreCheck,
                                                    data: dict[str, Any]) -> None:
    walked = copy.deepcopy(data)
    Redact(RedactOptions()).redact(walked)
    if pre_check(data):
        assert walked == data
