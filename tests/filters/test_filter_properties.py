"""Property tests: hash, bucket and ``when:`` conditions against simple reference models."""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from router.conditions import Condition
from router.event import Event
from router.filters.privacy import Bucket, BucketOptions, Hash, HashOptions

keys = st.text(min_size=16, max_size=64)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
lengths = st.integers(min_value=8, max_value=64)

# --- hash ---


def hasher(key: str, length: int = 64) -> Hash:
    return Hash(HashOptions(fields=["v"], key=key, length=length))


@given(key=keys, value=st.text(), length=lengths)
def test_hash_of_a_string_is_the_truncated_hmac_sha256_of_its_utf8(
    key: str, value: str, length: int
) -> None:
    expected = hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:length]
    assert hasher(key, length).digest(value) == expected


@given(key=keys, value=json_scalars | st.lists(json_scalars, max_size=4), length=lengths)
def test_hash_is_deterministic_across_instances_and_has_length_hex_digits(
    key: str, value: Any, length: int
) -> None:
    first, second = hasher(key, length), hasher(key, length)  # e.g. two processes, or a restart
    digest = first.digest(value)
    assert digest == first.digest(value) == second.digest(value)
    assert len(digest) == length and set(digest) <= set(string.hexdigits.lower())


@given(key_a=keys, key_b=keys, value=st.text())
def test_hash_depends_on_the_key(key_a: str, key_b: str, value: str) -> None:
    assume(key_a != key_b)
    assert hasher(key_a).digest(value) != hasher(key_b).digest(value)


@given(key=keys, values=st.lists(st.text(), min_size=2, max_size=2, unique=True))
def test_hash_tells_different_values_apart(key: str, values: list[str]) -> None:
    a, b = values
    assert hasher(key, 32).digest(a) != hasher(key, 32).digest(b)


# --- bucket ---

int_edges = st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=8, unique=True).map(sorted)
float_edges = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8, unique=True
).map(sorted)
numbers = st.integers(-20_000, 20_000) | st.floats(-2e6, 2e6, allow_nan=False)


def bucket_of(edges: list[Any]) -> Bucket:
    return Bucket(BucketOptions(field="v", edges=edges))


def reference_index(edges: list[Any], value: float) -> int:
    """Which of the len(edges) + 1 buckets a value falls in: edges are inclusive upper bounds."""
    for i, edge in enumerate(edges):
        if value <= edge:
            return i
    return len(edges)


def ordered_labels(bucket: Bucket) -> list[str]:
    below = [bucket.below_label] if bucket.below_label is not None else []
    return below + list(bucket.labels)


def describes(label: str, value: int) -> bool:
    """Whether a default integer label (``<0``, ``7``, ``11-50``, ``201+``) contains ``value``."""
    if label == "<0":
        return value < 0
    if m := re.fullmatch(r"(-?\d+)\+", label):
        return value >= int(m[1])
    if m := re.fullmatch(r"(-?\d+)-(-?\d+)", label):
        return int(m[1]) <= value <= int(m[2])
    if m := re.fullmatch(r"<=(-?\d+)", label):
        return value <= int(m[1])
    return value == int(label)


@given(edges=int_edges | float_edges, value=numbers)
def test_bucket_gives_every_value_exactly_the_reference_bucket(
    edges: list[Any], value: Any
) -> None:
    bucket = bucket_of(edges)
    label = bucket.label(value)
    labels = ordered_labels(bucket)
    assert labels.count(label) == 1  # one label, and it names exactly one bucket
    if bucket.below_label is not None and value < 0:
        assert label == "<0"
    else:
        assert label == bucket.labels[reference_index(edges, value)]


@given(edges=int_edges | float_edges, a=numbers, b=numbers)
def test_bucket_label_is_monotone_in_the_value(edges: list[Any], a: Any, b: Any) -> None:
    bucket = bucket_of(edges)
    labels = ordered_labels(bucket)
    low, high = sorted((a, b))
    assert labels.index(bucket.label(low)) <= labels.index(bucket.label(high))


@given(edges=int_edges, value=st.integers(-20_000, 20_000))
def test_bucket_default_integer_labels_tell_the_truth(edges: list[int], value: int) -> None:
    label = bucket_of(edges).label(value)
    assert label is not None and describes(label, value)


@given(edges=int_edges, value=st.integers(-20_000, 20_000))
def test_bucket_treats_numeric_strings_like_numbers(edges: list[int], value: int) -> None:
    bucket = bucket_of(edges)
    assert bucket.label(str(value)) == bucket.label(value) == bucket.label(f" {value}.0 ")


# --- when: conditions ---

FIELDS = ("a", "b", "c")
VALUES = st.sampled_from([0, 1, "x", "y", True, None])

leaf_specs = st.one_of(
    st.builds(lambda f, v: {"field": f, "equals": v}, st.sampled_from(FIELDS), VALUES),
    st.builds(
        lambda f, vs: {"field": f, "in": vs}, st.sampled_from(FIELDS), st.lists(VALUES, max_size=3)
    ),
    st.builds(lambda f, x: {"field": f, "exists": x}, st.sampled_from(FIELDS), st.booleans()),
    st.builds(lambda f: {"field": f, "matches": "^x"}, st.sampled_from(FIELDS)),
)
condition_specs = st.recursive(
    leaf_specs,
    lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=8,
)
datas = st.dictionaries(st.sampled_from(FIELDS), VALUES)
_ABSENT = object()


def reference(spec: dict[str, Any], data: dict[str, Any]) -> bool:
    """What a condition means, in plain Python."""
    if "all" in spec:
        return all(reference(c, data) for c in spec["all"])
    if "any" in spec:
        return any(reference(c, data) for c in spec["any"])
    if "not" in spec:
        return not reference(spec["not"], data)
    value = data.get(spec["field"], _ABSENT)
    if "exists" in spec:
        return (value is not _ABSENT) is spec["exists"]
    if "equals" in spec:
        return value is not _ABSENT and value == spec["equals"]
    if "in" in spec:
        return value is not _ABSENT and value in spec["in"]
    return (
        isinstance(value, str | int | float) and re.search(spec["matches"], str(value)) is not None
    )


def holds(spec: dict[str, Any], data: dict[str, Any]) -> bool:
    return Condition.model_validate(spec).compile()(Event.new(dict(data)))


@given(spec=condition_specs, data=datas)
def test_condition_agrees_with_python_all_any_not(
    spec: dict[str, Any], data: dict[str, Any]
) -> None:
    assert holds(spec, data) is reference(spec, data)


@given(specs=st.lists(condition_specs, max_size=3), data=datas)
def test_condition_de_morgan_laws(specs: list[dict[str, Any]], data: dict[str, Any]) -> None:
    negated = [{"not": s} for s in specs]
    assert holds({"not": {"all": specs}}, data) is holds({"any": negated}, data)
    assert holds({"not": {"any": specs}}, data) is holds({"all": negated}, data)


@given(spec=condition_specs, data=datas)
def test_condition_identities(spec: dict[str, Any], data: dict[str, Any]) -> None:
    value = holds(spec, data)
    assert holds({"not": {"not": spec}}, data) is value
    assert holds({"all": [spec]}, data) is value
    assert holds({"any": [spec]}, data) is value
    assert holds({"all": [spec, {"all": []}]}, data) is value  # all([]) is true
    assert holds({"any": [spec, {"any": []}]}, data) is value  # any([]) is false
