"""Structured ``when:`` conditions — data, never ``eval``.

    {field: version, matches: '^2\\.'}
    {field: deployment_type, in: [docker, kubernetes]}
    {all: [{field: platform.os, equals: linux}, {not: {field: beta, exists: true}}]}
    {source: beacon}        # where the event came in: beacon (POST /beacon) or posthog
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .event import _MISSING, Event, get_path, split_path

Predicate = Callable[[Event], bool]
_TESTS = ("equals", "in_", "matches", "exists")


class Condition(BaseModel):
    """One condition: a field test, or ``all`` / ``any`` / ``not`` of conditions."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str | None = Field(None, description="dotted path tested by the key beside it")
    source: str | list[str] | None = Field(
        None, description="where the event came in: beacon (POST /beacon) or posthog")
    equals: Any = Field(None, description="the field holds exactly this value")
    in_: list[Any] | None = Field(default=None, alias="in", description="one of these values")
    matches: str | None = Field(None, description="a string the regular expression finds")
    exists: bool | None = Field(None, description="true: the field is present; false: absent")
    all: list[Condition] | None = Field(None, description="every condition holds")
    any: list[Condition] | None = Field(None, description="at least one holds")
    not_: Condition | None = Field(default=None, alias="not", description="it does not hold")

    @model_validator(mode="after")
    def _one_shape(self) -> Condition:
        set_keys = self.model_fields_set
        if "source" in set_keys:
            if len(set_keys) > 1:
                raise ValueError("`source` stands alone; combine it with all / any / not")
            return self
        combinators = [k for k in ("all", "any", "not_") if k in set_keys]
        tests = [k for k in _TESTS if k in set_keys]
        if combinators:
            if len(combinators) > 1 or tests or "field" in set_keys:
                raise ValueError("use exactly one of all / any / not, with nothing beside it")
            return self
        if "field" not in set_keys:
            raise ValueError("a condition needs `field` (with equals, in, matches or exists), "
                             "`source`, or one of all / any / not")
        if len(tests) != 1:
            raise ValueError("a field condition takes exactly one of equals, in, matches, exists")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"matches: bad regular expression: {exc}") from exc
        return self

    def sources(self) -> frozenset[str] | None:
        """The sources a ``{source: …}`` condition admits; None for any other condition. A
        pipeline decides such a step once per source rather than once per event."""
        if "source" not in self.model_fields_set:
            return None
        return frozenset({self.source} if isinstance(self.source, str) else self.source or ())

    def compile(self) -> Predicate:
        """A fast predicate over an event; regexes and paths are prepared once here."""
        s = self.model_fields_set
        if "source" in s:
            sources = {self.source} if isinstance(self.source, str) else set(self.source or ())
            return lambda e: e.source in sources
        if "all" in s:
            preds = [c.compile() for c in self.all or []]
            return lambda e: all(p(e) for p in preds)
        if "any" in s:
            preds = [c.compile() for c in self.any or []]
            return lambda e: any(p(e) for p in preds)
        if "not_" in s:
            assert self.not_ is not None
            inner = self.not_.compile()
            return lambda e: not inner(e)
        assert self.field is not None
        path = split_path(self.field)

        def value(e: Event) -> Any:
            return get_path(e.data, path, _MISSING)

        if "exists" in s:
            want = bool(self.exists)
            return lambda e: (value(e) is not _MISSING) is want
        if "equals" in s:
            target = self.equals
            return lambda e: value(e) == target
        if "in_" in s:
            options = list(self.in_ or [])
            return lambda e: value(e) in options
        pattern = re.compile(self.matches or "")

        def matches(e: Event) -> bool:
            v = value(e)
            if v is _MISSING or v is None or isinstance(v, dict | list):
                return False
            return pattern.search(v if isinstance(v, str) else str(v)) is not None

        return matches
