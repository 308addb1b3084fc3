"""What every filter is: a callable ``Event -> Event | None``; ``None`` means dropped."""

from __future__ import annotations

import builtins
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
    """

    type: ClassVar[str] = ""
    Options: ClassVar[builtins.type[BaseModel]]  # absent on a type that takes no options
    drop_reason: ClassVar[str] = "dropped"

    def __init__(self, options: Any = None) -> None:
        self.options = options

    def __call__(self, event: Event) -> Event | None:
        raise NotImplementedError
