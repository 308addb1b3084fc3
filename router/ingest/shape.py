"""The shape every decoded body must have: an object, or a non-empty array of objects."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..speedups import speedups
from .limits import Limits

_KINDS: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def as_events(
    doc: Any, limits: Limits, *, fmt: str, max_possible_depth: int | None = None
) -> list[dict[str, Any]]:
    """``doc`` as a list of events, or BadRequest saying which rule it breaks.

    ``fmt`` names the format in messages (``"JSON"``). ``max_possible_depth`` is an upper bound
    on the document's nesting known from the decoder; when it is within the limit the (linear)
    depth walk is skipped.
    """
    if type(doc) is dict:
        events = [doc]
    elif type(doc) is list:
        if not doc:
            raise BadRequest("body is an empty array; send at least one event")
        if len(doc) > limits.max_events:
            raise BadRequest(f"{len(doc)} events, at most {limits.max_events} per request")
        for index, item in enumerate(doc):
            if type(item) is not dict:
                raise BadRequest(f"item {index} of the array is {kind(item)}, expected an object")
        events = doc
    else:
        raise BadRequest(f"body must be a {fmt} object or an array of objects, got {kind(doc)}")
    may_be_too_deep = max_possible_depth is None or max_possible_depth > limits.max_depth
    if may_be_too_deep and exceeds_depth(doc, limits.max_depth):
        raise too_deep(limits.max_depth)
    return events


def exceeds_depth(doc: dict[str, Any] | list[Any], max_depth: int) -> bool:
    """Whether objects and arrays nest more than ``max_depth`` levels (``doc`` itself is 1)."""
    # In C where it was built (7.7k → ~1k instructions an event of a PostHog batch); its
    # recursion stops at 1,000 levels, so a larger configured max_depth is walked here.
    if speedups is not None and max_depth <= _C_DEPTH_LIMIT:
        return speedups.exceeds_depth(doc, max_depth)
    return exceeds_depth_walk(doc, max_depth)


_C_DEPTH_LIMIT = 1000  # router/_speedups.c: MAX_LIMIT


def exceeds_depth_walk(doc: dict[str, Any] | list[Any], max_depth: int) -> bool:
    """``exceeds_depth`` in Python."""
    # Level by level, each level one comprehension: no interpreter stack for a hostile document
    # to exhaust, and ~20 % fewer instructions than a loop over an explicit stack of
    # (node, depth) pairs on a batch of 100 events (bench/README.md, "redact's dotted quads").
    level: list[Any] = [doc]
    for _ in range(max_depth - 1):  # then ``level`` holds the containers at depth max_depth
        level = [child for node in level
                 for child in (node.values() if type(node) is dict else node)
                 if type(child) is dict or type(child) is list]
        if not level:
            return False
    return any(type(child) is dict or type(child) is list for node in level
               for child in (node.values() if type(node) is dict else node))


def too_deep(max_depth: int) -> BadRequest:
    """The one error every decoder raises for a body nested past ``max_depth``."""
    return BadRequest(f"body is nested more than {max_depth} levels deep")


def kind(value: Any) -> str:
    """What a decoded value is, in JSON's words: ``an object``, ``a string``, ``null``…"""
    return _KINDS.get(type(value), type(value).__name__)
