"""Form-encoded beacons (``application/x-www-form-urlencoded``), as WordPress and PHP send them.

One body is one event. ``a[b]=c`` nests into objects and ``a[]=x`` appends to arrays, as PHP
reads them; values stay strings (typing them is a filter's job). A repeated plain field keeps
its last value, as in PHP; a field used both as a value and as a container is an error.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl

from ..errors import BadRequest
from .limits import Limits
from .shape import as_events, too_deep

_NESTED_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")  # base[seg][seg]…
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def decode(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    """The one event in a form-encoded body; BadRequest if it is empty, malformed or too big."""
    if not body or body.isspace():
        raise BadRequest("body is empty; send key=value fields")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"form body is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=limits.max_fields
        )
    except UnicodeDecodeError as exc:
        raise BadRequest(f"a percent-encoded form field is not valid UTF-8: {exc.reason}") from exc
    except ValueError as exc:  # parse_qsl's only other complaint: max_num_fields
        raise BadRequest(f"form body has more than {limits.max_fields} fields") from exc
    if not pairs:
        raise BadRequest("form body has no fields; send key=value fields")
    event: dict[str, Any] = {}
    depth = 1
    for name, value in pairs:
        path = _path(name)
        if len(path) > limits.max_depth:
            raise too_deep(limits.max_depth)
        depth = max(depth, len(path))
        _insert(event, path, value, name)
    return as_events(event, limits, fmt="form", max_possible_depth=depth)


def _path(name: str) -> list[str]:
    """``a[b][]`` → ``["a", "b", ""]``; a name that is not of that form is taken literally."""
    if not name:
        raise BadRequest("a form field has an empty name")
    match = _NESTED_NAME.fullmatch(name)
    if match is None:
        return [name]
    return [match[1], *_SEGMENT.findall(match[2])]


def _insert(event: dict[str, Any], path: list[str], value: str, name: str) -> None:
    """Set ``value`` at ``path`` in ``event``, creating objects, and arrays for ``[]``."""
    node: Any = event
    for segment, following in pairwise(path):
        container: type[Any] = list if following == "" else dict
        if isinstance(node, list):  # segment is "": each a[][x] starts a new element, as in PHP
            child = container()
            node.append(child)
        else:
            child = node.get(segment)
            if child is None:
                child = node[segment] = container()
            elif type(child) is not container:
                raise _conflict(name)
        node = child
    if isinstance(node, list):
        node.append(value)
    elif isinstance(node.get(path[-1], ""), str):
        node[path[-1]] = value  # a repeated plain field: the last one wins, as in PHP
    else:
        raise _conflict(name)


def _conflict(name: str) -> BadRequest:
    return BadRequest(
        f"form field {name[:64]!r} conflicts with an earlier field: a name holds a "
        "value, an object or an array, not two of them"
    )
