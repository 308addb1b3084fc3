"""YAML beacons (``application/yaml``): one mapping, or a list of mappings, in JSON's types.

Read with the YAML 1.2 core schema, so ``country: NO`` stays a string and ``time: 12:30`` is not
a number; timestamps stay strings; keys are the text written (``1: x`` gives ``{"1": "x"}``);
tags other than JSON's types (``!!python/…``, ``!!binary``, ``!!set``) are refused. Before
anything is built, one pass over the parser's events bounds nesting and aliases, so a
billion-laughs body is refused after reading a few hundred events.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import orjson
import yaml
from yaml.constructor import BaseConstructor, ConstructorError, SafeConstructor
from yaml.error import MarkedYAMLError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, ScalarNode

from ..errors import BadRequest
from .limits import Limits
from .shape import as_events, too_deep

MAX_ALIAS_NODES = 10_000
"""Nodes that aliases may add to a document once expanded: plenty for hand-written YAML."""

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null"))
_SCALAR_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL))
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
# RecursionError: PyYAML composes nodes recursively; _scan bounds the depth first, but a server
# configured with a very large max_depth could still reach Python's recursion limit.
_YAML_ERRORS = (yaml.YAMLError, RecursionError)


def _construct_int(loader: SafeConstructor, node: ScalarNode) -> int | float:
    text = loader.construct_scalar(node)
    try:
        if text[:2] == "0o":
            value = int(text[2:], 8)
        elif text[:2] == "0x":
            value = int(text[2:], 16)
        else:
            value = int(text, 10)
    except ValueError as exc:  # an explicit !!int on text that is not one, or 4300+ digits
        problem = (
            "integer is out of range"
            if text.lstrip("+-").isdigit()
            else f"{text[:32]!r} is not an integer"
        )
        raise ConstructorError(None, None, problem, node.start_mark) from exc
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    try:  # like orjson, which reads integers past 64 bits as floats
        return float(value)
    except OverflowError as exc:
        raise ConstructorError(None, None, "integer is out of range", node.start_mark) from exc


def _construct_float(loader: SafeConstructor, node: ScalarNode) -> float:
    try:
        return loader.construct_yaml_float(node)  # type: ignore[no-any-return]
    except ValueError as exc:  # an explicit !!float on text that is not one
        raise ConstructorError(None, None, "value is not a number", node.start_mark) from exc


def _construct_bool(loader: SafeConstructor, node: ScalarNode) -> bool:
    text = loader.construct_scalar(node)
    if text not in ("true", "True", "TRUE", "false", "False", "FALSE"):
        raise ConstructorError(None, None, f"{text[:32]!r} is not a boolean", node.start_mark)
    return text[0] in "tT"


class JsonSchemaLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe YAML loader that builds only what JSON can hold (YAML 1.2 core schema)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    yaml_constructors = {
        None: SafeConstructor.construct_undefined,
        _NULL: SafeConstructor.construct_yaml_null,
        _BOOL: _construct_bool,
        _INT: _construct_int,
        _FLOAT: _construct_float,
        _STR: SafeConstructor.construct_yaml_str,
        f"{_TAG}seq": SafeConstructor.construct_yaml_seq,
        f"{_TAG}map": SafeConstructor.construct_yaml_map,
    }

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Like the safe loader's, but a plain scalar key is always its text."""
        self.flatten_mapping(node)  # resolves `<<` merge keys first
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag in _SCALAR_TAGS:
                key_node.tag = _STR
        return BaseConstructor.construct_mapping(self, node, deep=deep)


for _tag, _pattern, _first in (
    (_NULL, r"~|null|Null|NULL|", "~nN"),
    (_BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        _FLOAT,
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+.0123456789",
    ),
    (f"{_TAG}merge", r"<<", "<"),
):
    JsonSchemaLoader.add_implicit_resolver(
        _tag, re.compile(f"^(?:{_pattern})$"), [*_first, *([""] if _tag == _NULL else [])]
    )


def decode(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    """The events in a YAML body; BadRequest naming the problem and its line if refused."""
    if not body or body.isspace():
        raise BadRequest("body is empty; send a YAML mapping or a list of mappings")
    try:
        aliases, deepest = _scan(body, limits)
        doc = yaml.load(body, Loader=JsonSchemaLoader)  # JSON types only, see above
    except _YAML_ERRORS as exc:
        raise BadRequest(f"body is not valid YAML: {_describe(exc)}") from exc
    if doc is None:
        raise BadRequest("body is an empty YAML document; send a mapping or a list of mappings")
    if aliases:
        # Aliases make several places share one object; a filter changing one would change
        # all. A JSON round trip gives each place its own copy.
        try:
            doc = orjson.loads(orjson.dumps(doc))
        except orjson.JSONEncodeError as exc:
            raise BadRequest(f"YAML body cannot be represented as JSON: {exc}") from exc
        return as_events(doc, limits, fmt="YAML")
    return as_events(doc, limits, fmt="YAML", max_possible_depth=deepest)


def _scan(body: bytes, limits: Limits) -> tuple[int, int]:
    """(alias uses, deepest nesting) of a YAML body, read as parser events, within limits."""
    aliases = depth = deepest = expanded = 0
    sizes: list[int] = []  # node counts of the collections open around the current event
    opened: list[str | None] = []  # and their anchors
    anchors: dict[str, int] = {}  # anchor → node count of what it names, once complete
    for event in yaml.parse(body, Loader=JsonSchemaLoader):
        if isinstance(event, ScalarEvent):
            size = 1
            if event.anchor is not None:
                anchors[event.anchor] = 1
        elif isinstance(event, AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise BadRequest(f"YAML body uses more than {limits.max_aliases} aliases")
            name = event.anchor or ""
            named = anchors.get(name)
            if named is None:  # undefined, or the collection being built (a cycle)
                raise BadRequest(
                    f"YAML alias *{name[:64]} is not defined before it is used, "
                    "or refers to a collection that contains it"
                )
            expanded += named
            if expanded > MAX_ALIAS_NODES:
                raise BadRequest(f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes")
            size = named
        elif isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > limits.max_depth:
                raise too_deep(limits.max_depth)
            deepest = max(deepest, depth)
            if event.anchor is not None:  # a redefined anchor names nothing until complete
                anchors.pop(event.anchor, None)
            sizes.append(1)
            opened.append(event.anchor)
            continue
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
            size = sizes.pop()
            anchor = opened.pop()
            if anchor is not None:
                anchors[anchor] = size
        else:  # stream and document boundaries
            continue
        if sizes:
            sizes[-1] += size
    return aliases, deepest


def _describe(exc: BaseException) -> str:
    """A one-line account of a YAML error: the problem, then line and column."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MarkedYAMLError) and exc.problem:
        problem = f"{exc.context}, {exc.problem}" if exc.context else exc.problem
        if problem.startswith("could not determine a constructor"):
            problem += "; only plain values, lists and mappings are accepted"
        mark = exc.problem_mark
        return f"{problem} at line {mark.line + 1} column {mark.column + 1}" if mark else problem
    return " ".join(str(exc).split())
