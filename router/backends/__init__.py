"""Backends, found by the YAML ``type:``; ``type: pkg.module:Class`` loads a user's own."""

from __future__ import annotations

# Importing the modules fills BACKENDS through @register.
from . import amplitude, file, mixpanel, posthog, segment, stdout, store, webhook
from .base import BACKENDS, Backend, Options, Request, SendResult, register

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
