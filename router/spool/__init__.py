"""Spools: where accepted events wait durably until every backend has them.

The Redis spool needs the ``redis`` extra, so it is imported only when a config asks for it
(``router.extras``); ``from router.spool import RedisSpool`` still works where it is installed.
"""

from __future__ import annotations

from typing import Any

from .base import DeadLetter, Entry, Spool
from .factory import create_spool
from .sqlite import SqliteSpool


def __getattr__(name: str) -> Any:
    """``RedisSpool`` on first use, so that importing this package needs no redis."""
    if name == "RedisSpool":
        from .redis import RedisSpool

        return RedisSpool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DeadLetter", "Entry", "RedisSpool", "Spool", "SqliteSpool", "create_spool"]
