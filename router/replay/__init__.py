"""``beacon-router replay``: backfill a backend from a store backend's archive (see run.py)."""

from __future__ import annotations

from .checkpoint import Checkpoint, Selection
from .run import Replay

__all__ = ["Checkpoint", "Replay", "Selection"]
