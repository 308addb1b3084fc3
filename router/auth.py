"""Bearer tokens: the admin token and the source tokens, always compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from pydantic import SecretStr


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def matches(given: str | None, secrets: Iterable[SecretStr | str]) -> bool:
    """Whether ``given`` is one of ``secrets``; every secret is compared, in constant time, so
    neither the answer's timing nor its position in the list tells which part matched."""
    if given is None:
        return False
    raw = given.encode()
    found = False
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        found |= hmac.compare_digest(raw, value.encode())
    return found
