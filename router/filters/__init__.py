"""The filter pipeline: one loop over a list of callables, every drop counted by reason.

``FILTERS`` maps a YAML ``type:`` to its class; ``type: pkg.module:Class`` loads a user's own.

A filter that keeps state router instances share (``dedupe`` on a Redis spool) cannot answer one
event at a time without a network round trip each. Such a filter has a ``shared_scope``; given
the shared store, the pipeline calls ``share(store, scope)`` on it, after which the filter's
``call_batch`` is an ``async (events) -> [event or None]`` that decides for all the events of a
request that reach it in one round trip. A pipeline with such a step is ``batched`` and runs
with ``await pipeline.run(events)``. Without one, ``pipeline(event)`` stays the plain loop, with
no await per event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from ..config.schema import FilterSpec
from ..event import Event
from .base import FILTERS, Filter, FilterFn, Options, register

DropHook = Callable[[str, str], None]  # (filter type, reason)
Predicate = Callable[[Event], bool]  # a compiled ``when:``
BatchFn = Callable[[list[Event]], Awaitable[list[Event | None]]]
Step = tuple[str, Filter, Predicate | None]
BatchStep = tuple[str, BatchFn, str, Predicate | None]  # name, call_batch, drop reason, when


class Pipeline:
    """Runs filters in order; the first that returns None drops the event.

    ``shared`` is the store of state router instances share
    (``router.spool.redis_shared.RedisShared``), or None to keep every filter's state in this
    process (see the module docstring).
    """

    def __init__(
        self,
        specs: Sequence[object] = (),
        on_drop: DropHook | None = None,
        shared: Any = None,
    ) -> None:
        self._steps: list[Step] = []
        self._on_drop = on_drop
        # Per step, the sources its ``when: {source: …}`` admits (None: decided per event);
        # from them, per source, the steps that apply with that test gone (see _steps_for).
        self._sources: list[frozenset[str] | None] = []
        self._by_source: dict[str, list[FilterFn]] = {}
        # Consecutive plain steps, then the batch step that follows them (None at the end).
        self._stages: list[tuple[Pipeline, BatchStep | None]] = []
        scopes: Counter[str] = Counter()
        plain: list[Step] = []
        for spec in specs:
            assert isinstance(spec, FilterSpec)
            when = spec.when.compile() if spec.when is not None else None
            step = spec.build()
            scope = step.shared_scope if shared is not None else None
            if scope is not None:
                # Two filters with the same settings in one pipeline must not share one memory.
                scopes[scope] += 1
                step.share(shared, scope if scopes[scope] == 1 else f"{scope}.{scopes[scope]}")
            self._steps.append((spec.type, step, when))
            self._sources.append(spec.when.sources() if spec.when is not None else None)
            if step.call_batch is None:
                plain.append((spec.type, step, when))
            else:
                batch_step = (spec.type, step.call_batch, step.drop_reason, when)
                self._stages.append((Pipeline._of(plain, on_drop), batch_step))
                plain = []
        if self._stages:
            self._stages.append((Pipeline._of(plain, on_drop), None))
        # A step decides per request: run with ``await run(events)``, not per event.
        self.batched = bool(self._stages)

    @classmethod
    def _of(cls, steps: list[Step], on_drop: DropHook | None) -> Pipeline:
        pipeline = cls(on_drop=on_drop)
        pipeline._steps = steps
        pipeline._sources = [None] * len(steps)
        return pipeline

    def __len__(self) -> int:
        return len(self._steps)

    def __call__(self, event: Event) -> Event | None:
        steps = self._by_source.get(event.source)
        if steps is None:
            steps = self._steps_for(event.source)
        # The loop is the pipeline's own cost per step: one call and one test, nothing else.
        for step in steps:
            event = step(event)  # type: ignore[assignment]
            if event is None:
                if self._on_drop is not None:
                    self._dropped_by(step)
                return None
        return event

    def _dropped_by(self, step: FilterFn) -> None:
        assert self._on_drop is not None
        owner = getattr(step, "__self__", step)  # the filter (or _When) of a bound __call__
        inner = owner.step if isinstance(owner, _When) else owner
        for name, candidate, _ in self._steps:
            if candidate is inner:
                self._on_drop(name, candidate.drop_reason)
                return

    def _steps_for(self, source: str) -> list[FilterFn]:
        """The steps an event from ``source`` goes through, ``when: {source: …}`` decided, each
        a plain callable (a ``when:`` left to decide per event wraps its step)."""
        steps: list[FilterFn] = []
        for (_, step, when), admits in zip(self._steps, self._sources, strict=True):
            if admits is not None and source not in admits:
                continue
            runs = step if admits is not None or when is None else _When(step, when)
            # The bound __call__, not the object: calling an object goes through its type's
            # call slot, which looks __call__ up and packs the arguments into a tuple on every
            # call (~1,000 instructions in CPython 3.11); a bound method is called directly.
            steps.append(runs.__call__)
        if len(self._by_source) < 64:  # sources are a handful; a client cannot add any
            self._by_source[source] = steps
        return steps

    async def run(self, events: Iterable[Event]) -> list[Event]:
        """The events that pass, in order; works whether or not the pipeline is ``batched``."""
        kept = list(events)
        if not self._stages:  # (__call__: see _steps_for)
            return [e for e in map(self.__call__, kept) if e is not None]
        for plain, batch_step in self._stages:
            if plain._steps:
                kept = [e for e in map(plain.__call__, kept) if e is not None]
            if batch_step is not None and kept:
                kept = await self._run_batch(batch_step, kept)
        return kept

    async def _run_batch(self, batch_step: BatchStep, events: list[Event]) -> list[Event]:
        name, call_batch, reason, when = batch_step
        applies = [True] * len(events) if when is None else [when(e) for e in events]
        results = iter(await call_batch([e for e, a in zip(events, applies, strict=True) if a]))
        kept = []
        for event, applied in zip(events, applies, strict=True):
            result = next(results) if applied else event
            if result is not None:
                kept.append(result)
            elif self._on_drop is not None:
                self._on_drop(name, reason)
        return kept

    def explain(self, event: Event) -> tuple[Event | None, str | None]:
        """Run the pipeline and say which filter dropped the event, for ``dry-run``."""
        why: list[str] = []
        kept = Pipeline._of(self._steps, lambda name, reason: why.append(f"{name}: {reason}"))(
            event)
        return kept, (why[0] if why else None)


class _When:
    """A step whose ``when:`` is decided per event: an event it does not hold for passes as is."""

    __slots__ = ("_call", "step", "when")

    def __init__(self, step: Filter, when: Predicate) -> None:
        self.step = step
        self.when = when
        self._call = step.__call__  # (see Pipeline._steps_for)

    def __call__(self, event: Event) -> Event | None:
        return self._call(event) if self.when(event) else event


# Importing the modules fills FILTERS through @register.
from . import (  # noqa: E402
    coerce,  # coerce
    dedupe,
    enrich,  # geoip, user_agent
    fields,  # drop, keep, rename, copy, set, default
    privacy,  # hash, bucket
    quality,  # validate, opt_out, sample
    redact,
    round_time,
)

__all__ = [
    "FILTERS",
    "Filter",
    "FilterFn",
    "Options",
    "Pipeline",
    "coerce",
    "dedupe",
    "enrich",
    "fields",
    "privacy",
    "quality",
    "redact",
    "register",
    "round_time",
]
