"""The filter pipeline: one loop over a list of callables, every drop counted by reason.

``FILTERS`` maps a YAML ``type:`` to its class; ``type: pkg.module:Class`` loads a user's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..event import Event
from .base import Filter, FilterFn, Options

FILTERS: dict[str, type[Filter]] = {}


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: make a filter available under its ``type``."""
    FILTERS[cls.type] = cls
    return cls


DropHook = Callable[[str, str], None]  # (filter type, reason)


class Pipeline:
    """Runs filters in order; the first that returns None drops the event."""

    def __init__(self, specs: Sequence[object] = (), on_drop: DropHook | None = None) -> None:
        from ..config import FilterSpec

        self._steps: list[tuple[str, FilterFn, Callable[[Event], bool] | None]] = []
        for spec in specs:
            assert isinstance(spec, FilterSpec)
            when = spec.when.compile() if spec.when is not None else None
            self._steps.append((spec.type, spec.build(), when))
        self._on_drop = on_drop

    def __len__(self) -> int:
        return len(self._steps)

    def __call__(self, event: Event) -> Event | None:
        for name, step, when in self._steps:
            if when is not None and not when(event):
                continue
            result = step(event)
            if result is None:
                if self._on_drop is not None:
                    self._on_drop(name, getattr(step, "drop_reason", "dropped"))
                return None
            event = result
        return event

    def explain(self, event: Event) -> tuple[Event | None, str | None]:
        """Run the pipeline and say which filter dropped the event, for ``dry-run``."""
        for name, step, when in self._steps:
            if when is not None and not when(event):
                continue
            result = step(event)
            if result is None:
                return None, f"{name}: {getattr(step, 'drop_reason', 'dropped')}"
            event = result
        return event, None


# Importing the modules fills FILTERS through @register.
from . import (  # noqa: E402
    fields,  # drop, keep, rename, copy, set, default, coerce
    privacy,  # hash, bucket, redact, round_time
    quality,  # validate, opt_out, sample, dedupe
)

__all__ = [
    "FILTERS",
    "Filter",
    "FilterFn",
    "Options",
    "Pipeline",
    "fields",
    "privacy",
    "quality",
    "register",
]
