"""Throttled: a repeated log line at most once per interval, with the count held back."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from router.logs import Throttled


def test_a_repeated_line_is_logged_once_per_interval_with_the_count_it_held_back():
    now = [100.0]
    throttled = Throttled(structlog.get_logger("t"), interval=10.0, clock=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(1000):
            throttled("error", "spool write failed", error="disk full")
        now[0] += 10.0
        throttled("error", "spool write failed", error="disk full")
    assert [(e["event"], e.get("suppressed")) for e in logs] == [
        ("spool write failed", None), ("spool write failed", 999)]
    assert logs[0]["log_level"] == "error"


def test_different_keys_are_throttled_apart():
    throttled = Throttled(structlog.get_logger("t"), interval=60.0, clock=lambda: 0.0)
    with capture_logs() as logs:
        for _ in range(3):
            throttled("warning", "retry", key="retry:a")
            throttled("warning", "retry", key="retry:b")
    assert len(logs) == 2
