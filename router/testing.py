"""Test helpers that implement the real interfaces: a backend driven by a handler function."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from .backends.base import Backend, Request, SendResult
from .event import Event

SendHandler = Callable[[Sequence[Event]], Awaitable[SendResult] | SendResult]


class MockBackend(Backend):
    """A backend whose ``send`` calls ``handler``; records every batch it was given."""

    type = "mock"

    def __init__(self, name: str = "mock", handler: SendHandler | None = None) -> None:
        super().__init__(name)
        self.handler = handler
        self.batches: list[list[Event]] = []
        self.closed = False
        self.sent = asyncio.Event()

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    def render(self, batch: Sequence[Event]) -> list[Request]:
        return [Request("SEND", f"mock://{self.name}", {}, [e.to_dict() for e in batch])]

    async def send(self, batch: Sequence[Event]) -> SendResult:
        self.batches.append(list(batch))
        self.sent.set()
        if self.handler is None:
            return SendResult.delivered()
        result = self.handler(batch)
        return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]

    async def aclose(self) -> None:
        self.closed = True
