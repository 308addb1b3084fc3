"""What every filter is: a callable ``Event -> Event | None``; ``None`` means dropped."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from ..event import Event


class FilterFn(Protocol):
    """The one shape the pipeline runs: return the (possibly changed) event, or None to drop."""

    def __call__(self, event: Event) -> Event | None: ...


class Options(BaseModel):
    """Base of a filter's config keys: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Filter:
    """Base of config-built filters: settings in ``__init__``, work in ``__call__``.

    ``Options`` validates the filter's YAML keys at config load; ``drop_reason`` labels the
    drop counter when ``__call__`` returns None.

    Optional: a filter whose memory router instances can share (``dedupe``) has a
    ``shared_scope``; after ``share(store, scope)`` its ``call_batch`` decides for all of a
    request's events in one round trip (see :mod:`router.filters`).
    """

    type: ClassVar[str] = ""
    Options: ClassVar[builtins.type[BaseModel]]  # absent on a type that takes no options
    drop_reason: ClassVar[str] = "dropped"
    shared_scope: str | None = None
    call_batch: Callable[[list[Event]], Awaitable[list[Event | None]]] | None = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    def __call__(self, event: Event) -> Event | None:
        raise NotImplementedError

    def share(self, store: Any, scope: str) -> None:
        """Keep this filter's memory in ``store`` (only where ``shared_scope`` is set)."""
        raise NotImplementedError


FILTERS: dict[str, type[Filter]] = {}


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: make a filter available under its ``type``."""
    FILTERS[cls.type] = cls
    return cls
