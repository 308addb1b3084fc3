"""router._speedups (router/_speedups.c), or None where it was not built or is switched off.

setup.py builds it as optional: an install without a C compiler goes on without it, and each
caller uses its function's pure-Python twin instead (filters/redact.py, ingest/shape.py).
``BEACON_ROUTER_PURE_PYTHON=1`` leaves it unused, to run or test the twins on a machine that
has it (README.md, "Quick start").
"""

from __future__ import annotations

import os
from types import ModuleType

try:
    from . import _speedups as _built
except ImportError:  # built without a C compiler
    _built = None  # type: ignore[assignment]

PURE_PYTHON = os.environ.get("BEACON_ROUTER_PURE_PYTHON", "") not in ("", "0")
speedups: ModuleType | None = None if PURE_PYTHON else _built
