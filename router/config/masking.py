"""Secrets in a config: which keys hold them, and a copy of a config with them masked."""

from __future__ import annotations

import re
from typing import Any

# Keys whose values are secrets: masked by `check --show`, never logged.
SECRET_KEYS = re.compile(
    r"(^|_)(key|secret|token|tokens|password|passwd|api_key|write_key|authorization)$",
    re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")


def masked(value: Any, key: str = "") -> Any:
    """A copy of a raw config with every secret replaced by ``***``."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    # "$"-names are PostHog's event properties (`$group_key`: a group's id), never credentials.
    if key and not key.startswith("$") and SECRET_KEYS.search(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value
