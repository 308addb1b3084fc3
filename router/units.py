"""Human units in config: durations (``250ms 2s 10m 72h 400d``) and sizes (``512KiB 1MiB``)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB|K|M|G)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3,
}


def parse_duration(value: object) -> float:
    """Seconds from ``2s``/``10m``/``72h``/``400d``/``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 2s, 10m, 72h or 400d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; use a number with ms, s, m, h, d "
                             "or w (e.g. 2s, 72h)")
        seconds = float(match[1]) * _DURATION_UNITS[match[2] or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from ``512KiB``/``1MiB``/``10MB`` or a bare number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512KiB or 1MiB")
    if isinstance(value, int | float):
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(
                f"{value!r} is not a size; use a number with B, KiB, MiB, GiB, KB, MB or GB")
        size = int(float(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()])
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for ``check --show``."""
    for unit in ("d", "h", "m", "s"):
        n = seconds / _DURATION_UNITS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{round(seconds * 1000)}ms"
