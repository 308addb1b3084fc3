"""The tap's hub: where ingest and delivery hand events to whoever is watching.

Zero cost when nobody taps: publishers test ``TAP.active`` (a plain attribute) and do nothing
else. A subscriber has a bounded queue; when it is full, events for it are dropped and counted,
so a slow reader never slows ingest or delivery. A subscriber sees one stage: the events the
global pipeline kept (once they are durable), or the events one backend is about to send (after
its `when:` and its own filters). What a filter removed is never shown: it is gone by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import orjson

from ..event import Event

PIPELINE = ""  # the stage name of events after the global pipeline (a backend's is its name)
QUEUE_EVENTS = 1000  # per subscriber: what may wait for a slow reader before drops begin
# Seconds between two looks, while no event comes, at whether a tap's reader left: until then
# its subscriber makes every published batch do work, and aiohttp cancels no handler whose
# client left (the stream and its relay both look, router/tap/admin.py and proxy.py).
CHECK_READER = 0.5

Predicate = Callable[[Event], bool]


class Subscriber:
    """One tap: a stage, an optional condition, and a bounded queue of JSON lines."""

    def __init__(self, stage: str, when: Predicate | None = None,
                 size: int = QUEUE_EVENTS) -> None:
        self.stage, self.when = stage, when
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, events: Iterable[Event | bytes]) -> None:
        for item in events:
            if self.when is not None:
                event = item if isinstance(item, Event) else Event.from_json(item)
                if not self.when(event):
                    continue
            line = item.to_json() if isinstance(item, Event) else bytes(item)
            try:
                self.queue.put_nowait(line)
            except asyncio.QueueFull:
                self.dropped += 1

    def close(self) -> None:
        """Wake the reader with the end of the stream (even when the queue is full)."""
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.dropped += 1


class Tap:
    """Subscribers by stage; ``active`` is False while there are none."""

    def __init__(self) -> None:
        self.active = False
        self._subscribers: list[Subscriber] = []

    @property
    def subscribers(self) -> int:
        """How many taps are open (the admin API's, the dashboard's)."""
        return len(self._subscribers)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)
        self.active = True

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        self.active = bool(self._subscribers)

    def publish(self, stage: str, events: Iterable[Event | bytes]) -> None:
        """Offer events to the subscribers of ``stage``; call only when ``active``."""
        batch = None
        for subscriber in self._subscribers:
            if subscriber.stage == stage:
                batch = batch if batch is not None else list(events)
                subscriber.offer(batch)

    def close_all(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.close()


TAP = Tap()
"""The process's hub: one router per process, and both its apps (ingest, admin) share it."""


def dumps_notice(dropped: int) -> bytes:
    """The line that tells a reader how many events it missed: ``{"tap": {"dropped": N}}``."""
    return orjson.dumps({"tap": {"dropped": dropped}})
