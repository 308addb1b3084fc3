"""What one request may cost the router: bytes on the wire, bytes decompressed, events, nesting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ServerConfig

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps every ingest decoder enforces; each breach is a 4xx, never a 5xx."""

    max_body: int = 1 * MiB  # bytes read from the wire (compressed size)
    max_decompressed: int = 8 * MiB  # bytes a compressed body may expand to
    max_events: int = 1000  # events in one request
    max_depth: int = 32  # nesting of objects and arrays, the body's top level being 1
    max_fields: int = 1000  # fields in one form-encoded body
    max_aliases: int = 100  # alias uses (*name) in one YAML body

    @classmethod
    def from_server(cls, server: ServerConfig) -> Limits:
        """The limits configured under ``server:``."""
        return cls(
            max_body=server.max_body,
            max_decompressed=server.max_decompressed,
            max_events=server.max_events,
            max_depth=server.max_depth,
        )


def human_size(n: int) -> str:
    """``8 MiB``, ``512 KiB`` or ``1000 bytes``: sizes in error details, as ops write them."""
    for unit, size in (("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
