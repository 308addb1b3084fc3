"""router._speedups (router/_speedups.c) is built where CI runs, is used unless switched off,
and its exceeds_depth answers as the pure-Python walk does. (Its redact pre-check is tested
beside the filter: tests/filters/test_redact_pre_check.py.)"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import IN_CI, REPO

from router.filters import redact
from router.ingest import shape
from router.speedups import PURE_PYTHON, _built, speedups


def test_the_c_module_is_built_in_ci_and_used() -> None:
    # `make test` installs with a compiler there: a silent fallback would leave the C untested.
    if _built is None:
        if IN_CI:
            pytest.fail("router/_speedups.c was not built; CI=true requires it")
        pytest.skip("router/_speedups.c not built (no C compiler at install time)")
    if not PURE_PYTHON:
        assert speedups is _built
        assert redact.nothing_to_redact is _built.nothing_to_redact


def test_pure_python_switches_it_off() -> None:
    code = ("from router.speedups import speedups; from router.filters import redact; "
            "print(speedups, redact.nothing_to_redact.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, text=True,
                         capture_output=True, env={"BEACON_ROUTER_PURE_PYTHON": "1"}).stdout
    assert out.split() == ["None", "nothing_to_redact_text"]


_trees = st.recursive(st.none() | st.integers() | st.text(max_size=3),
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=2), inner, max_size=3),
                      max_leaves=30)


@given(doc=st.lists(_trees, max_size=4) | st.dictionaries(st.text(max_size=2), _trees,
                                                          max_size=4),
       max_depth=st.integers(1, 8))
def test_exceeds_depth_in_c_answers_as_the_walk(doc: Any, max_depth: int) -> None:
    if _built is None:
        pytest.skip("router/_speedups.c not built")
    assert _built.exceeds_depth(doc, max_depth) is shape.exceeds_depth_walk(doc, max_depth)


def test_exceeds_depth_at_the_bounds() -> None:
    nested: list[Any] = []
    for _ in range(1499):
        nested = [nested]  # 1,500 levels
    for max_depth in (1, 2, 999, 1000, 1001, 1499, 1500, 5000):
        assert shape.exceeds_depth(nested, max_depth) is (max_depth < 1500), max_depth
    if _built is None:
        return
    assert _built.exceeds_depth([[{}]], 2) and not _built.exceeds_depth([[{}]], 3)
    # a subclass is not an object or array to the walk, nor to the C
    class Sub(dict):  # type: ignore[type-arg]
        pass

    doc = [Sub(a=Sub(b={}))]
    assert _built.exceeds_depth(doc, 1) is shape.exceeds_depth_walk(doc, 1) is False
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError):
            _built.exceeds_depth([], bad)
    with pytest.raises(TypeError):
        _built.exceeds_depth("x", 3)
