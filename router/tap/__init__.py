"""``beacon-router tap``: watch events flow through a running router (see hub.py)."""

from __future__ import annotations

from .hub import PIPELINE, TAP, Subscriber, Tap

__all__ = ["PIPELINE", "TAP", "Subscriber", "Tap"]
