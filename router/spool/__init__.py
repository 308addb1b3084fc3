"""Spools: where accepted events wait durably until every backend has them."""

from __future__ import annotations

from .base import DeadLetter, Entry, Spool
from .factory import create_spool
from .redis import RedisSpool
from .sqlite import SqliteSpool

__all__ = ["DeadLetter", "Entry", "RedisSpool", "Spool", "SqliteSpool", "create_spool"]
