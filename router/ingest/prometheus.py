"""Prometheus text exposition (``text/plain; version=0.0.4``) and OpenMetrics, as one event.

A body is one scrape, so it becomes one event::

    {"format": "prometheus",
     "metrics": {"go_goroutines": 42.0,
                 "prometheus_build_info": [{"labels": {"version": "2.45.0"}, "value": 1.0}]}}

``metrics`` is keyed by sample name (a histogram gives ``x_bucket``, ``x_sum``, ``x_count``). A
name with a single unlabelled sample maps to its number; any other name maps to a list of
``{"labels": {...}, "value": v}`` in the order written. HELP, TYPE and sample timestamps are not
kept. NaN and ±Inf stay floats here and become ``null`` when the event is stored as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

from ..errors import BadRequest
from .limits import Limits
from .shape import as_events

# event → metrics → list → sample → labels
_DEPTH = 5
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_Parser = Callable[[str], Iterable[Metric]]


def decode(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    """The one event in a Prometheus text exposition body."""
    return _decode(body, limits, prometheus_families, "Prometheus text")


def decode_openmetrics(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    """The one event in an OpenMetrics text body (it must end with ``# EOF``)."""
    return _decode(body, limits, openmetrics_families, "OpenMetrics text")


def _decode(body: bytes, limits: Limits, parse: _Parser, fmt: str) -> list[dict[str, Any]]:
    if not body or body.isspace():
        raise BadRequest(f"body is empty; send {fmt} with at least one sample")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in parse(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((sample.labels,
                                                            _number(sample.value)))
    # The parsers are third-party code fed untrusted text: they signal bad input mostly with
    # ValueError, but an odd line can surface as another exception. Any of them is the
    # client's mistake, so it is a 400, never a 500.
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or "a line is malformed"
        raise BadRequest(f"body is not valid {fmt}: {reason}") from exc
    if not samples:
        raise BadRequest(f"body has no metric samples; send {fmt} with at least one sample")
    metrics: dict[str, Any] = {}
    for name, found in samples.items():
        if len(found) == 1 and not found[0][0]:
            metrics[name] = found[0][1]
        else:
            metrics[name] = [{"labels": labels, "value": value} for labels, value in found]
    return as_events(
        {"format": "prometheus", "metrics": metrics}, limits, fmt=fmt, max_possible_depth=_DEPTH
    )


def _number(value: float) -> float:
    """A sample value the spool can store. The parsers give an integer for integer text, and
    the spool's JSON (orjson) holds 64 bits: a longer integer becomes a float, as orjson reads
    one in JSON. (Found by fuzzing: such a value was a 500.) Past a float's range it raises
    OverflowError, a 400 above."""
    if isinstance(value, int) and not _INT64_MIN <= value <= _UINT64_MAX:
        return float(value)
    return value
