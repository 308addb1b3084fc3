"""Source profiles: one per product's client, so installations keep their beacon URL unchanged.

model.py holds what YAML says, profile.py compiles one profile (match tests, field mapping,
answer), resolve.py picks the profile of a beacon (path, method, User-Agent, shape), loader.py
reads ``sources.include`` and ``sources.profiles``. docs/sources.md describes them for users.
"""

from __future__ import annotations

from .loader import load_profiles
from .model import GENERIC_PATH, ProfileConfig
from .profile import FALLBACK, UNKNOWN_PRODUCT, Profile, RequestFacts
from .resolve import EMPTY, Profiles, Resolution

__all__ = [
    "EMPTY",
    "FALLBACK",
    "GENERIC_PATH",
    "UNKNOWN_PRODUCT",
    "Profile",
    "ProfileConfig",
    "Profiles",
    "RequestFacts",
    "Resolution",
    "load_profiles",
]
