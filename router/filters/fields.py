"""Field-shaping filters: drop, keep, rename, copy, set, default (``coerce`` is in coerce.py).

Each works on dotted paths (``platform.os``) in ``event.data`` and edits it in place. A missing
field is never an error: there is simply nothing to do for it.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from ..event import _MISSING, Event, delete_path, get_path, set_path, split_path
from .base import Filter, Options, register
from .wildcard import WILDCARD, expand

_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


def _valid_path(value: str) -> str:
    if not _PATH.fullmatch(value):
        raise ValueError(f"{value!r} is not a field path (names joined by dots, e.g. platform.os)")
    return value


FieldPath = Annotated[str, AfterValidator(_valid_path)]
"""A dotted path into ``event.data``, checked at config load: ``platform.os``, ``counts.users``."""

Path = tuple[str, ...]


def json_value(value: Any) -> Any:
    """A YAML value as JSON can carry it: dates become ISO strings; sets and bytes are refused."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, datetime | date | time):
        # YAML reads an unquoted 2024-01-01 as a date; the event must stay plain JSON.
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError(f"{value!r} is not a JSON value (string, number, bool, null, list, mapping)")


JsonValue = Annotated[Any, AfterValidator(json_value)]


def replace_path(data: dict[str, Any], path: Path, value: Any) -> None:
    """Replace the value at an existing path, in a dict or a list, without reshaping anything.

    Unlike ``set_path`` this never turns a list on the way into a dict, so ``tags.0`` is safe.
    """
    if len(path) == 1:
        parent: Any = data
    elif len(path) == 2:  # most paths (counts.users): no slice and no walk for one step
        parent = data.get(path[0])
    else:
        parent = get_path(data, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = value


# --- drop / keep ---------------------------------------------------------------------------------


class FieldsOptions(Options):
    """``fields:`` — a non-empty list of dotted paths."""

    fields: list[FieldPath] = Field(min_length=1, description="dotted paths, e.g. platform.os")


@register
class Drop(Filter):
    """Remove the listed paths."""

    type = "drop"
    Options = FieldsOptions

    def __init__(self, options: FieldsOptions) -> None:
        super().__init__(options)
        self._paths = [split_path(p) for p in options.fields]
        # The first key of every path: an event holding none of them has nothing to drop,
        # found with one set operation in C instead of a walk per path (most beacons). A path
        # that starts with a wildcard can match any key: then there is no such shortcut.
        # Paths by their top-level key, in the order written: an event is visited only under
        # the keys it holds (most beacons hold none), and paths under different keys cannot
        # touch each other. None when a path starts with a wildcard: it can match any key.
        # Through ``expand`` every path cost a generator, a list and a walk per event (~6k
        # instructions; a PostHog event holds ``properties``, a shipped head: ~68k per event).
        self._by_head: dict[str, list[tuple[Path, int, bool]]] | None = {}
        for path in self._paths:
            if path[0] == WILDCARD:
                self._by_head = None
                break
            self._by_head.setdefault(path[0], []).append((path, len(path), WILDCARD in path))
        self._heads = frozenset(self._by_head or ())

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        by_head = self._by_head
        if by_head is None:
            for pattern in self._paths:
                for path in list(expand(data, pattern)):  # listed: deleting edits the dict
                    delete_path(data, path)
            return event
        for head in self._heads.intersection(data):
            for pattern, length, wild in by_head[head]:
                if wild:
                    for path in list(expand(data, pattern)):
                        delete_path(data, path)
                elif length == 1:
                    data.pop(head, None)
                elif length == 2:  # (a path without `*` names itself: deleted straight away)
                    parent = data.get(head)
                    if isinstance(parent, dict):
                        parent.pop(pattern[1], None)
                else:
                    delete_path(data, pattern)
        return event


_WHOLE = None  # a leaf of the keep-tree: keep the value as it is, whatever it holds
KeepTree = dict[str, "KeepTree | None"]


def keep_tree(paths: list[str]) -> KeepTree:
    """``[a, b.c, b.d]`` → ``{a: None, b: {c: None, d: None}}``; a shorter path wins."""
    tree: KeepTree = {}
    for path in sorted(paths, key=lambda p: p.count(".")):
        node: KeepTree | None = tree
        *parents, leaf = split_path(path)
        for part in parents:
            assert node is not None
            if part in node and node[part] is _WHOLE:
                node = None  # an ancestor is already kept whole
                break
            node = node.setdefault(part, {})
        if node is not None:
            node[leaf] = _WHOLE
    return tree


def project(data: dict[str, Any], tree: KeepTree) -> dict[str, Any]:
    """The part of ``data`` the tree names; objects left empty by the projection are omitted."""
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key not in data:
            continue
        value = data[key]
        if sub is _WHOLE:
            out[key] = value
        elif isinstance(value, dict):
            kept = project(value, sub)
            if kept:
                out[key] = kept
    return out


@register
class Keep(Filter):
    """Allowlist: keep only the listed paths (nested paths keep only the named leaves)."""

    type = "keep"
    Options = FieldsOptions

    def __init__(self, options: FieldsOptions) -> None:
        super().__init__(options)
        self._tree = keep_tree(options.fields)

    def __call__(self, event: Event) -> Event | None:
        event.data = project(event.data, self._tree)
        return event


# --- rename / set / default ----------------------------------------------------------------------


class RenameOptions(Options):
    """``fields: {old.path: new.path}``, applied in the order written."""

    fields: dict[FieldPath, FieldPath] = Field(min_length=1, description="old.path: new.path")

    @field_validator("fields")
    @classmethod
    def _no_self_rename(cls, v: dict[str, str]) -> dict[str, str]:
        for old, new in v.items():
            if old == new:
                raise ValueError(f"{old!r} is renamed to itself")
        return v


@register
class Rename(Filter):
    """Move values from one path to another; an existing value at the new path is replaced."""

    type = "rename"
    Options = RenameOptions

    def __init__(self, options: RenameOptions) -> None:
        super().__init__(options)
        self._moves = [(split_path(old), split_path(new)) for old, new in options.fields.items()]

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for old, new in self._moves:
            value = get_path(data, old, _MISSING)
            if value is not _MISSING and delete_path(data, old):
                set_path(data, new, value)
        return event


@register
class Copy(Filter):
    """Copy values to another path, keeping the original (e.g. to hash one copy differently)."""

    type = "copy"
    Options = RenameOptions

    def __init__(self, options: RenameOptions) -> None:
        super().__init__(options)
        self._copies = [(split_path(src), split_path(dst)) for src, dst in options.fields.items()]

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for src, dst in self._copies:
            value = get_path(data, src, _MISSING)
            if value is not _MISSING:  # a deep copy: a later filter may edit either in place
                set_path(data, dst, copy.deepcopy(value))
        return event


class AssignOptions(Options):
    """``fields: {path: value}`` — the values are any JSON value."""

    fields: dict[FieldPath, JsonValue] = Field(min_length=1, description="path: value to write")


def _assignments(fields: dict[str, Any]) -> list[tuple[Path, Any, bool]]:
    # Containers are copied per event: a later filter editing one event must not edit the config.
    return [(split_path(p), v, isinstance(v, dict | list)) for p, v in fields.items()]


@register
class Set(Filter):
    """Write the given values, replacing whatever is there."""

    type = "set"
    Options = AssignOptions

    def __init__(self, options: AssignOptions) -> None:
        super().__init__(options)
        self._assignments = _assignments(options.fields)

    def __call__(self, event: Event) -> Event | None:
        for path, value, mutable in self._assignments:
            set_path(event.data, path, copy.deepcopy(value) if mutable else value)
        return event


@register
class Default(Filter):
    """Write the given values only where the path is absent (an explicit null is kept)."""

    type = "default"
    Options = AssignOptions

    def __init__(self, options: AssignOptions) -> None:
        super().__init__(options)
        self._assignments = _assignments(options.fields)

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for path, value, mutable in self._assignments:
            if get_path(data, path, _MISSING) is _MISSING:
                set_path(data, path, copy.deepcopy(value) if mutable else value)
        return event
