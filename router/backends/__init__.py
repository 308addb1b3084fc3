"""Backends, found by the YAML ``type:``; ``type: pkg.module:Class`` loads a user's own."""

from __future__ import annotations

from .base import Backend, Options, Request, SendResult

BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend available under its ``type``."""
    BACKENDS[cls.type] = cls
    return cls


# Importing the modules fills BACKENDS through @register.
from . import amplitude, file, mixpanel, posthog, segment, stdout, store, webhook  # noqa: E402

__all__ = [
    "BACKENDS",
    "Backend",
    "Options",
    "Request",
    "SendResult",
    "amplitude",
    "file",
    "mixpanel",
    "posthog",
    "register",
    "segment",
    "stdout",
    "store",
    "webhook",
]
