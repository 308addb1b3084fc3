"""Spools: where accepted events wait durably until every backend has them.

The Redis spool (:mod:`router.spool.redis`) needs the ``redis`` extra, so this package face does
not import it: ``create_spool`` does, when a config asks for it (``router.extras``).
"""

from __future__ import annotations

from .base import DeadLetter, Entry, Spool
from .factory import create_spool
from .sqlite import SqliteSpool

__all__ = ["DeadLetter", "Entry", "Spool", "SqliteSpool", "create_spool"]
