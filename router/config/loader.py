"""Reading a config file: YAML with ``${VAR}`` expansion, validated completely before anything
starts.

Every error names file, line and key path (``router.yaml:14: backends.posthog.batch.max_events:
must be > 0``), and all of them are reported at once. Filters and backends are found by
``type:`` in the registries (``router.filters.FILTERS``, ``router.backends.BACKENDS``) or, for a
dotted ``pkg.module:Class``, imported; each validates its own keys with its ``Options`` model.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import extras
from ..backends import BACKENDS
from ..backends.base import Backend
from ..conditions import Condition
from ..configtest.suite import suite_errors
from ..errors import ConfigError, ConfigErrors
from ..filters import FILTERS, Filter
from ..sources import EMPTY, load_profiles
from ..yamlsource import LinedYaml, Path, format_path, load_file, load_text
from .schema import (
    BACKEND_COMMON,
    FILTER_COMMON,
    SECTIONS,
    TOP_LEVEL,
    BackendCommon,
    BackendSpec,
    Config,
    FilterSpec,
)


def load(file: str, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate ``file``; raise ConfigError(s) naming file, line and key."""
    return _Validator(load_file(file, env)).config()


def loads(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Like :func:`load` for YAML text (tests, ``dry-run`` of a snippet)."""
    return _Validator(load_text(text, file, env)).config()


class _Validator:
    """Walks the parsed YAML once, collecting every error before raising them together."""

    def __init__(self, doc: LinedYaml) -> None:
        self.doc = doc
        self.errors: list[ConfigError] = []

    def config(self) -> Config:
        data = self.doc.data
        if not isinstance(data, dict):
            raise self.doc.error((), "the config must be a mapping of sections")
        for key in data:
            if key not in TOP_LEVEL:
                self.errors.append(self.doc.error(
                    (key,), f"unknown key; valid keys: {', '.join(sorted(TOP_LEVEL))}"))
        sections = {name: self.model(model, data.get(name) or {}, (name,))
                    for name, model in SECTIONS.items()}
        pipeline = self.filters(data.get("pipeline") or [], ("pipeline",))
        backends = self.backends(data.get("backends") or {}, ("backends",))
        if "tests" in data:  # checked here so `check` and `serve` report a broken one too
            self.errors += suite_errors(self.doc, data["tests"], ("tests",))
        sources = sections["sources"]
        profiles = (load_profiles(sources.profiles, sources.include, self.doc, self.errors)
                    if sources is not None else EMPTY)
        stats = sections["stats"]
        if stats is not None and stats.store is not None and getattr(
                backends.get(stats.store), "type", None) != "store":
            self.errors.append(self.doc.error(("stats", "store"),
                                              "must name a backend of `type: store`"))
        self.errors += extras.missing(self.doc)  # e.g. spool type: redis without the redis extra
        if self.errors:
            raise self.errors[0] if len(self.errors) == 1 else ConfigErrors(self.errors)
        backends = {name: replace(spec, profiles=profiles) for name, spec in backends.items()}
        return Config(file=self.doc.file, server=sections["server"], spool=sections["spool"],
                      pipeline=pipeline, backends=backends, raw=data,
                      sources=sections["sources"], admin=sections["admin"],
                      stats=sections["stats"], limits=sections["limits"], profiles=profiles)

    def model(self, model: type[BaseModel], value: Any, path: Path) -> Any:
        if not isinstance(value, dict):
            self.errors.append(self.doc.error(path, "must be a mapping"))
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                self.errors.append(self.doc.error((*path, *err["loc"]), _message(err, model)))
            return None

    def filters(self, value: Any, path: Path) -> tuple[FilterSpec, ...]:
        if not isinstance(value, list):
            self.errors.append(self.doc.error(path, "must be a list of filters"))
            return ()
        specs = []
        for i, entry in enumerate(value):
            where = (*path, i)
            if not isinstance(entry, dict) or "type" not in entry:
                self.errors.append(self.doc.error(where, "each filter needs a `type:`"))
                continue
            cls = self.resolve(entry["type"], FILTERS, Filter, (*where, "type"))
            when = self.condition(entry.get("when"), (*where, "when"))
            rest = {k: v for k, v in entry.items() if k not in FILTER_COMMON}
            options = self.options(cls, rest, where)
            if cls is not None:
                specs.append(FilterSpec(entry["type"], cls, options, when, format_path(where)))
        return tuple(specs)

    def backends(self, value: Any, path: Path) -> dict[str, BackendSpec]:
        if not isinstance(value, dict):
            self.errors.append(self.doc.error(path, "must be a mapping of name: backend"))
            return {}
        specs = {}
        for name, entry in value.items():
            where = (*path, name)
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", name):
                self.errors.append(self.doc.error(
                    where, "backend names use letters, digits, _ . - (at most 64)"))
            if not isinstance(entry, dict) or "type" not in entry:
                self.errors.append(self.doc.error(where, "each backend needs a `type:`"))
                continue
            cls = self.resolve(entry["type"], BACKENDS, Backend, (*where, "type"))
            shared = self.model(BackendCommon, {k: v for k, v in entry.items()
                                                 if k in BACKEND_COMMON - {"filters"}}, where)
            filters = self.filters(entry.get("filters") or [], (*where, "filters"))
            for i, f in enumerate(filters):
                # Delivery runs long after the client was answered: nobody to reject to.
                if getattr(f.options, "on_invalid", None) == "reject":
                    self.errors.append(self.doc.error(
                        (*where, "filters", i, "on_invalid"),
                        "`reject` only works in the global pipeline; use `drop` here"))
            rest = {k: v for k, v in entry.items() if k not in BACKEND_COMMON}
            options = self.options(cls, rest, where)
            if cls is not None and shared is not None:
                specs[name] = BackendSpec(
                    name=name, type=shared.type, cls=cls, options=options, enabled=shared.enabled,
                    when=shared.when, filters=filters, batch=shared.batch, retry=shared.retry,
                    concurrency=shared.concurrency)
        return specs

    def condition(self, value: Any, path: Path) -> Condition | None:
        return None if value is None else self.model(Condition, value, path)

    def options(self, cls: type | None, rest: dict[str, Any], path: Path) -> BaseModel | None:
        if cls is None:
            return None
        model = getattr(cls, "Options", None)
        if model is None:
            for key in rest:
                self.errors.append(self.doc.error((*path, key), "unknown key; this type has none"))
            return None
        return self.model(model, rest, path)

    def resolve(self, name: Any, registry: Mapping[str, type], base: type, path: Path
                ) -> type | None:
        kind = "filter" if base is Filter else "backend"
        if not isinstance(name, str):
            self.errors.append(self.doc.error(path, f"must be a {kind} type name"))
            return None
        if name in registry:
            return registry[name]
        if ":" in name:
            module, _, attr = name.partition(":")
            try:
                cls = getattr(importlib.import_module(module), attr)
                return cls if issubclass(cls, base) else _with_base(cls, base)
            except (ImportError, AttributeError, TypeError) as exc:
                self.errors.append(self.doc.error(path, f"cannot load {name}: {exc}"))
                return None
        self.errors.append(self.doc.error(
            path, f"unknown {kind} type {name!r}; valid types: {', '.join(sorted(registry))}, "
                  "or a dotted path module:Class"))
        return None


def _with_base(cls: type, base: type) -> type:
    """A user's class of the filter (or backend) shape that does not derive the base class:
    the same class with the base's defaults for the optional capabilities it leaves out."""
    return type(cls.__name__, (cls, base), {"__module__": cls.__module__})


def _message(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        names = sorted(f.alias or n for n, f in model.model_fields.items())
        return f"unknown key; valid keys: {', '.join(names)}"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
