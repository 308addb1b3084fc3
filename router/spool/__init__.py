"""Spools: where accepted events wait durably until every backend has them."""

from __future__ import annotations

from ..config import SpoolConfig
from .base import DeadLetter, Entry, Spool
from .sqlite import SqliteSpool


def create_spool(config: SpoolConfig) -> Spool:
    """The spool the config asks for (SQLite file by default)."""
    if config.type == "sqlite":
        return SqliteSpool(config.path, max_size=config.max_size, when_full=config.when_full)
    raise NotImplementedError(f"spool type {config.type!r} is not available yet")


__all__ = ["DeadLetter", "Entry", "Spool", "SqliteSpool", "create_spool"]
