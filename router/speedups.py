"""The router's C modules, or None where they were not built or are switched off.

- ``speedups``: router._speedups (router/_speedups.c), hot loops of the ingest path.
- ``hmac``: router._hmac (router/_hmac.c), the hash filter's HMAC-SHA256 on OpenSSL.

setup.py builds them as optional: an install without a C compiler (or OpenSSL's headers) goes on
without them, and each caller uses its pure-Python twin instead (filters/redact.py,
filters/round_time.py, filters/privacy.py, ingest/shape.py), with the same answers.
``BEACON_ROUTER_PURE_PYTHON=1`` leaves them unused, to run or test the twins on a machine that
has them (README.md, "Quick start").
"""

from __future__ import annotations

import os
from types import ModuleType

try:
    from . import _speedups as _built
except ImportError:  # built without a C compiler
    _built = None  # type: ignore[assignment]
try:
    from . import _hmac as _built_hmac
except ImportError:  # built without a C compiler or OpenSSL's headers
    _built_hmac = None  # type: ignore[assignment]

PURE_PYTHON = os.environ.get("BEACON_ROUTER_PURE_PYTHON", "") not in ("", "0")
speedups: ModuleType | None = None if PURE_PYTHON else _built
hmac: ModuleType | None = None if PURE_PYTHON else _built_hmac


def in_use() -> str:
    """The C modules this process runs, for ops ("speedups,hmac"; "none" in pure Python): an
    install without a compiler is slower (bench/README.md), and this is where it shows —
    ``beacon_router_build_info``'s ``native`` label, ``/admin/status``, the startup log."""
    names = [name for name, module in (("speedups", speedups), ("hmac", hmac)) if module]
    return ",".join(names) or "none"
