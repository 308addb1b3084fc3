"""The depth bound every decoder applies (ingest/shape.py): exact at the limit, for objects and
arrays mixed, whichever branch holds the deepest container."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ingest.shape import exceeds_depth


def depth(value: Any) -> int:
    """The reference: how many levels of objects and arrays nest in ``value`` (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(levels: int) -> Any:
    """An object of ``levels`` levels, alternating objects and arrays, with shallow siblings."""
    value: Any = {"leaf": 1}
    for i in range(levels - 1):
        value = [0, value, {"x": 1}, []] if i % 2 == 0 else {"a": [], "deeper": value}
    return value


@pytest.mark.parametrize("levels", range(1, 8))
@pytest.mark.parametrize("max_depth", range(1, 8))
def test_a_document_exceeds_the_bound_exactly_when_it_nests_deeper(levels, max_depth):
    doc = nested(levels)
    assert depth(doc) == levels
    assert exceeds_depth(doc, max_depth) is (levels > max_depth)


_json = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                  max_size=3),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=2), _json, max_size=3) | st.lists(_json, max_size=3),
       max_depth=st.integers(1, 6))
def test_the_bound_agrees_with_the_recursive_depth(doc, max_depth):
    assert exceeds_depth(doc, max_depth) is (depth(doc) > max_depth)
