"""The installed base, read back from a ``type: store`` backend: report, API, dashboard, public.

``Stats`` (service.py) answers reports from an in-memory day index (days.py) that one indexed
range query per dialect fills (queries.py); report.py defines the numbers, kanon.py the public
buckets, summary.py the ``beacon-router stats`` table. Its HTTP endpoints are
:mod:`router.web.stats`.
"""

from __future__ import annotations

from .report import Range, build_report
from .service import Stats, store_backend

__all__ = [
    "Range",
    "Stats",
    "build_report",
    "store_backend",
]
