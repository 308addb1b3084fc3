"""``coerce``: convert values to the types a backend or a dashboard expects (``"37"`` → 37).

A missing field is never an error; a value that cannot be converted is kept, removed, or drops
the event (``on_error``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field

from ..errors import CoerceFailed
from ..event import _MISSING, Event, delete_path, get_path, split_path
from .base import Filter, Options, register
from .fields import FieldPath, replace_path

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})



def to_int(value: Any) -> int:
    """``"37"``/``37.0``/``true`` → int; fractional, non-finite or non-numeric values fail."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise CoerceFailed
    if isinstance(value, str):
        text = value.strip()
        if _INT.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # over Python's 4300-digit limit
                raise CoerceFailed from None
        if _FLOAT.fullmatch(text):
            return to_int(to_float(text))
    raise CoerceFailed


def to_float(value: Any) -> float:
    """``"0.25"``/``3``/``true`` → float; NaN and infinities fail (JSON cannot carry them)."""
    numeric = isinstance(value, bool | int | float)
    if not numeric and not (isinstance(value, str) and _FLOAT.fullmatch(value.strip())):
        raise CoerceFailed
    try:
        result = float(value)
    except OverflowError:  # an integer too large for a float
        raise CoerceFailed from None
    if not math.isfinite(result):
        raise CoerceFailed
    return result


def to_str(value: Any) -> str:
    """Numbers → their decimal form; booleans → ``"true"``/``"false"``; null and objects fail."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    raise CoerceFailed


def to_bool(value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case) and the numbers 1/0; anything else fails."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise CoerceFailed


CONVERTERS = {"int": to_int, "float": to_float, "str": to_str, "bool": to_bool}


class CoerceOptions(Options):
    """``fields: {path: int|float|str|bool}`` and what to do when a value cannot be converted."""

    fields: dict[FieldPath, Literal["int", "float", "str", "bool"]] = Field(
        min_length=1, description="path: the type to convert its value to")
    on_error: Literal["keep", "remove", "drop_event"] = Field(
        "keep", description="a value that cannot be converted: kept as is, its field removed, "
                            "or the event dropped (coerce_failed)")


@register
class Coerce(Filter):
    """Convert values to the given types: ``"37"`` → 37, ``"true"`` → true, 1.5 → ``"1.5"``."""

    type = "coerce"
    Options = CoerceOptions
    drop_reason = "coerce_failed"

    def __init__(self, options: CoerceOptions) -> None:
        super().__init__(options)
        self._conversions = [(split_path(p), CONVERTERS[t]) for p, t in options.fields.items()]
        self._on_error = options.on_error

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for path, convert in self._conversions:
            value = get_path(data, path, _MISSING)
            if value is _MISSING:
                continue
            try:
                converted = convert(value)
            except CoerceFailed:
                if self._on_error == "drop_event":
                    return None
                if self._on_error == "remove":
                    delete_path(data, path)
                continue
            if converted is not value:
                replace_path(data, path, converted)
        return event
