"""Expected values in config tests: a subset of the actual value, plus four matchers.

A mapping matches when every key it names matches (other keys may exist); a list matches a list
of the same length element by element; a scalar must be equal (``1`` is not ``"1"``, ``true`` is
not ``1``). A mapping with exactly one of these keys is a matcher instead, the vocabulary of
``when:`` conditions:

    {matches: '^[0-9a-f]{64}$'}    a string that the regular expression finds (re.search)
    {exists: false}                 the key is absent ({exists: true}: present, any value)
    {equals: {...}}                 exactly this value: no subset, no matchers inside
    {in: [docker, kubernetes]}      one of these values

To expect a real mapping whose only key is one of those words, write ``{equals: {matches: x}}``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import orjson

OPERATORS = frozenset({"matches", "exists", "equals", "in"})
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
_SHOWN = 160  # characters of a value shown in a one-line mismatch


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One difference: where, what the test expected and what the config produced."""

    path: str
    expected: str
    actual: str
    diff: tuple[str, ...] = ()  # unified diff lines, for structures that differ in several places

    def render(self, indent: str) -> list[str]:
        where = self.path or "(the whole value)"
        lines = [
            f"{indent}{where}",
            f"{indent}    expected: {self.expected}",
            f"{indent}    actual:   {self.actual}",
        ]
        lines += [f"{indent}    {line}" for line in self.diff]
        return lines


def is_operator(value: Any) -> bool:
    """True for a one-key mapping whose key is a matcher name."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in OPERATORS


def check_expected(value: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems with an expected value (bad regex, wrong operand type), each with its sub-path."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if is_operator(value):
        ((op, arg),) = value.items()
        if op == "matches":
            if not isinstance(arg, str):
                problems.append(((op,), "must be a regular expression (a string)"))
            else:
                try:
                    re.compile(arg)
                except re.error as exc:
                    problems.append(((op,), f"bad regular expression: {exc}"))
        elif op == "exists" and not isinstance(arg, bool):
            problems.append(((op,), "must be true or false"))
        elif op == "in" and not isinstance(arg, list):
            problems.append(((op,), "must be a list of values"))
    elif isinstance(value, dict):
        for key, item in value.items():
            problems += [((key, *sub), msg) for sub, msg in check_expected(item)]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems += [((i, *sub), msg) for sub, msg in check_expected(item)]
    return problems


def match(expected: Any, actual: Any, path: str = "") -> list[Mismatch]:
    """Every place where ``actual`` does not match ``expected`` (empty: it matches)."""
    if is_operator(expected):
        return _operator(expected, actual, path)
    if actual is MISSING:
        return [Mismatch(path, show(expected), "missing")]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [Mismatch(path, show(expected), show(actual))]
        out: list[Mismatch] = []
        for key, want in expected.items():
            out += match(want, actual.get(key, MISSING), join(path, key))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [_structural(path, expected, actual)]
        out = []
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            out += match(want, got, f"{path}[{i}]")
        return out
    return [] if same(expected, actual) else [Mismatch(path, show(expected), show(actual))]


def _operator(expected: dict[str, Any], actual: Any, path: str) -> list[Mismatch]:
    ((op, arg),) = expected.items()
    if op == "exists":
        if (actual is not MISSING) is arg:
            return []
        return [
            Mismatch(
                path,
                "present" if arg else "absent",
                "missing" if actual is MISSING else show(actual),
            )
        ]
    if actual is MISSING:
        return [Mismatch(path, show(expected), "missing")]
    if op == "matches":
        ok = isinstance(actual, str) and re.search(arg, actual) is not None
        return [] if ok else [Mismatch(path, f"a string matching {arg!r}", show(actual))]
    if op == "in":
        if any(same(option, actual) for option in arg):
            return []
        return [Mismatch(path, f"one of {show(arg)}", show(actual))]
    if same(arg, actual):  # equals
        return []
    return [_structural(path, arg, actual)]


def _structural(path: str, expected: Any, actual: Any) -> Mismatch:
    """A mismatch of whole structures: both shown, plus a line diff when they are containers."""
    diff: tuple[str, ...] = ()
    if isinstance(expected, dict | list) and isinstance(actual, dict | list):
        diff = tuple(
            difflib.unified_diff(
                _pretty(expected), _pretty(actual), "expected", "actual", lineterm="", n=2
            )
        )
    return Mismatch(path, show(expected), show(actual), diff)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: ``1 == 1.0``, but ``true != 1`` and ``"1" != 1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def join(path: str, key: str) -> str:
    """``data`` + ``counts`` → ``data.counts``."""
    return f"{path}.{key}" if path else key


def show(value: Any) -> str:
    """A value as one line of JSON, cut short."""
    if value is MISSING:
        return "missing"
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _pretty(value: Any) -> list[str]:
    return (
        orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        .decode()
        .splitlines()
    )
