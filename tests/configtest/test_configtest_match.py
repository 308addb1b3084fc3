"""Expected values in config tests: subsets, the four matchers, and JSON-strict equality."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.configtest.match import check_expected, match, same

EVENT = {
    "uuid": "u-1",
    "data": {
        "version": "1.4.2",
        "counts": {"users": "11-50"},
        "features": ["sso", "api"],
        "beta": False,
    },
}


def paths(expected, actual=EVENT):
    return [m.path for m in match(expected, actual)]


def test_a_mapping_matches_as_a_subset_of_the_actual_one():
    assert paths({"data": {"counts": {"users": "11-50"}}}) == []


def test_a_wrong_nested_value_is_reported_at_its_dotted_path():
    (mismatch,) = match({"data": {"counts": {"users": "0-10"}}}, EVENT)

    assert (mismatch.path, mismatch.expected, mismatch.actual) == (
        "data.counts.users",
        '"0-10"',
        '"11-50"',
    )


def test_a_key_the_actual_value_lacks_is_reported_missing():
    (mismatch,) = match({"data": {"hostname": "h"}}, EVENT)

    assert (mismatch.path, mismatch.actual) == ("data.hostname", "missing")


def test_lists_match_element_by_element_and_must_have_the_same_length():
    assert paths({"data": {"features": ["sso", "api"]}}) == []
    assert paths({"data": {"features": ["sso"]}}) == ["data.features"]
    assert paths({"data": {"features": ["sso", "web"]}}) == ["data.features[1]"]


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (1, "1"),
        ("1", 1),
        (True, 1),
        (1, True),
        (False, 0),
        (None, False),
        ("", None),
        ({"a": 1}, [1]),
        ([1], {"0": 1}),
    ],
)
def test_values_of_different_json_types_never_match(expected, actual):
    assert match(expected, actual)


def test_an_integer_matches_the_same_float():
    assert match(3, 3.0) == []


def test_matches_searches_a_string_with_a_regular_expression():
    assert paths({"uuid": {"matches": "^u-[0-9]$"}}) == []
    assert paths({"uuid": {"matches": "^[0-9a-f]{64}$"}}) == ["uuid"]
    assert paths({"data": {"beta": {"matches": "."}}}) == ["data.beta"]  # not a string


def test_exists_false_requires_the_key_to_be_absent():
    assert paths({"data": {"hostname": {"exists": False}}}) == []
    assert paths({"data": {"version": {"exists": False}}}) == ["data.version"]


def test_exists_true_accepts_any_value_but_not_absence():
    assert paths({"data": {"beta": {"exists": True}}}) == []
    assert paths({"data": {"hostname": {"exists": True}}}) == ["data.hostname"]


def test_equals_demands_the_exact_value_not_a_subset():
    exact = {
        "version": "1.4.2",
        "counts": {"users": "11-50"},
        "features": ["sso", "api"],
        "beta": False,
    }

    assert paths({"data": {"equals": exact}}) == []
    (mismatch,) = match({"data": {"equals": {"version": "1.4.2"}}}, EVENT)
    assert mismatch.path == "data"
    assert any(line.startswith("+") and "counts" in line for line in mismatch.diff)


def test_equals_escapes_a_mapping_that_looks_like_a_matcher():
    assert match({"equals": {"matches": "x"}}, {"matches": "x"}) == []
    assert match({"matches": "x"}, {"matches": "x"})  # read as a matcher: not a string


def test_in_accepts_any_of_its_values():
    assert paths({"data": {"version": {"in": ["1.4.1", "1.4.2"]}}}) == []
    assert paths({"data": {"version": {"in": ["2.0.0"]}}}) == ["data.version"]


def test_a_matcher_on_a_missing_key_reports_it_missing():
    (mismatch,) = match({"data": {"hostname": {"matches": "."}}}, EVENT)

    assert mismatch.actual == "missing"


@pytest.mark.parametrize(
    ("expected", "problem"),
    [
        ({"a": {"matches": "("}}, (("a", "matches"), "bad regular expression")),
        ({"a": [{"matches": 5}]}, (("a", 0, "matches"), "must be a regular expression")),
        ({"exists": "yes"}, (("exists",), "must be true or false")),
        ({"in": "docker"}, (("in",), "must be a list")),
    ],
)
def test_a_broken_matcher_is_reported_with_its_path(expected, problem):
    ((path, message),) = check_expected(expected)

    assert path == problem[0]
    assert message.startswith(problem[1])


# Keys from letters no matcher name is spelled with, so a generated mapping is never a matcher.
keys = st.text(alphabet="abcdz_", max_size=5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_every_value_matches_itself_and_equals_itself(value):
    assert match(value, value) == []
    assert match({"equals": value}, value) == []
    assert same(value, value)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, json_values, min_size=1, max_size=5), st.data())
def test_any_subset_of_a_mapping_matches_it(actual, data):
    keys = data.draw(st.lists(st.sampled_from(sorted(actual)), unique=True))

    assert match({k: actual[k] for k in keys}, actual) == []
