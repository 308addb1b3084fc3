"""``type: stdout`` — print each event as one JSON line, for debugging a pipeline."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from ..event import Event
from .base import Backend, Request, SendResult, register


@register
class StdoutBackend(Backend):
    """Writes ``event.to_dict()`` as JSON Lines to standard output; it has no options."""

    type = "stdout"

    def __init__(self, name: str, options: None = None) -> None:
        super().__init__(name, options)
        self._lock = asyncio.Lock()  # batches from concurrent sends never interleave

    def render(self, batch: Sequence[Event]) -> list[Request]:
        return [Request("WRITE", "stdout", {}, [event.to_json().decode() for event in batch])]

    async def send(self, batch: Sequence[Event]) -> SendResult:
        text = "".join(event.to_json().decode() + "\n" for event in batch)
        try:
            async with self._lock:
                # In a thread: a reader that stops reading the pipe must not stall the loop.
                await asyncio.to_thread(_write, text)
        except (OSError, ValueError) as exc:  # ValueError: stdout was closed
            return SendResult.retry_all(len(batch), f"cannot write to stdout: {exc}")
        return SendResult.delivered()


def _write(text: str) -> None:
    # Looked up per call, so a redirected sys.stdout (tests, embedding) is honoured.
    sys.stdout.write(text)
    sys.stdout.flush()
