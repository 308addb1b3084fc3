"""The C modules (router/_speedups.c, router/_hmac.c) are built where CI runs and used unless
switched off; exceeds_depth answers as the pure-Python walk does, the HMAC as Python's hmac.
(The redact pre-check and round_time's floor are tested beside their filters:
tests/filters/test_redact_pre_check.py, tests/filters/test_fast_paths.py.)"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import IN_CI, REPO

from router.event import Event
from router.filters import redact
from router.filters.privacy import Hash, HashOptions
from router.ingest import shape
from router.speedups import PURE_PYTHON, _built, _built_hmac, in_use, speedups
from router.speedups import hmac as c_hmac


def test_the_c_modules_are_built_in_ci_and_used() -> None:
    # `make test` installs with a compiler and OpenSSL's headers there: a silent fallback
    # would leave the C untested.
    for name, built in (("_speedups", _built), ("_hmac", _built_hmac)):
        if built is None:
            if IN_CI:
                pytest.fail(f"router/{name}.c was not built; CI=true requires it")
            pytest.skip(f"router/{name}.c not built (no C compiler or headers at install time)")
    if not PURE_PYTHON:
        assert speedups is _built and c_hmac is _built_hmac
        assert redact.nothing_to_redact is _built.nothing_to_redact
        assert Hash(HashOptions(fields=["x"], key="k" * 32))._keyed is not None  # type: ignore[arg-type]
        assert in_use() == "speedups,hmac"  # what /metrics and /admin/status tell ops


def test_pure_python_switches_it_off() -> None:
    code = ("from router.speedups import speedups, in_use; from router.filters import redact; "
            "print(speedups, redact.nothing_to_redact.__name__, in_use())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, text=True,
                         capture_output=True, env={"BEACON_ROUTER_PURE_PYTHON": "1"}).stdout
    assert out.split() == ["None", "nothing_to_redact_text", "none"]


_texts = st.text() | st.sampled_from(["", "é", "\U0001f600",
                                      "5eed0000-0001-4a1e-9f3c-000000000001"])


@given(key=st.binary(min_size=16, max_size=200), value=_texts | st.binary(max_size=300),
       length=st.integers(1, 64))
def test_the_c_hmac_is_hmac_sha256(key: bytes, value: str | bytes, length: int) -> None:
    if _built_hmac is None:
        pytest.skip("router/_hmac.c not built")
    message = value.encode() if isinstance(value, str) else value
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()[:length]
    assert _built_hmac.hexdigest(_built_hmac.keyed(key), value, length) == expected


@given(value=_texts | st.integers() | st.lists(st.integers(), max_size=3),
       length=st.integers(8, 64))
def test_the_hash_filter_digests_alike_with_and_without_the_c(value: Any, length: int) -> None:
    with_c = Hash(HashOptions(fields=["v"], key="k" * 32, length=length))  # type: ignore[arg-type]
    python = Hash(HashOptions(fields=["v"], key="k" * 32, length=length))  # type: ignore[arg-type]
    python._keyed = None
    assert with_c.digest(value) == python.digest(value)
    # the filter's own loop (its inline digest) too, on two copies of one event
    hashed = [h(Event.new({"v": value, "w": 1})) for h in (with_c, python)]
    assert hashed[0] is not None and hashed[1] is not None
    assert hashed[0].data == hashed[1].data


def test_the_c_hmac_refuses_what_it_cannot_hash() -> None:
    if _built_hmac is None:
        pytest.skip("router/_hmac.c not built")
    keyed = _built_hmac.keyed(b"k" * 32)
    with pytest.raises(UnicodeEncodeError):  # as str.encode("utf-8") does
        _built_hmac.hexdigest(keyed, "\ud800", 64)
    for bad in ((b"short", "x", 64), (keyed, 1, 64), (keyed, "x", 0), (keyed, "x", 65)):
        with pytest.raises((TypeError, ValueError)):
            _built_hmac.hexdigest(*bad)


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
