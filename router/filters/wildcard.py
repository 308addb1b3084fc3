"""``*`` in a field path: one segment, any key (``counts.*`` is every count GitLab sends).

A product's counts are keyed by names the router cannot list in advance (``counts.issues``,
``statistics.posts_count``); a filter given ``counts.*`` applies to each of them. ``*`` matches
the keys of an object and the indexes of a list; a path without ``*`` is returned as it is.

``expand`` says which concrete paths a pattern names in one event. ``Place`` is the same pattern
compiled once, at config load, for the filters that replace values (hash, bucket): it walks to
the container once and visits its values there, where ``expand`` built a path per value and the
filter walked each one again from the root (the shipped pipeline's largest cost, bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..event import get_path

Path = tuple[str, ...]
WILDCARD = "*"

KEEP: Any = object()
"""What a ``Place.replace`` callback returns to leave a value as it is."""


def has_wildcard(path: Path) -> bool:
    return WILDCARD in path


def expand(data: Any, path: Path) -> Iterator[Path]:
    """The concrete paths in ``data`` that ``path`` names; nothing where a part is missing."""
    return _expand(data, path, 0)


def _expand(data: Any, path: Path, start: int) -> Iterator[Path]:
    # ``start``: where the next ``*`` is looked for. A key substituted before it is not looked
    # at again, so a key that is itself "*" (``{"counts": {"*": 1}}``) names one path and does
    # not recurse without end.
    if WILDCARD not in path[start:]:
        yield path
        return
    at = path.index(WILDCARD, start)
    node = data
    for part in path[:at]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    keys = (list(node) if isinstance(node, dict) else
            [str(i) for i in range(len(node))] if isinstance(node, list) else [])
    for key in keys:
        yield from _expand(data, (*path[:at], key, *path[at + 1:]), at + 1)


_ABSENT: Any = object()


class Place:
    """A field path (``*`` allowed) compiled once: ``replace`` visits every value it names.

    Three shapes: no ``*`` (one value, under its parent), a single trailing ``*`` (every value
    of one object or list: ``counts.*``), and anything else, which goes through ``expand`` as
    the filters did before. Each visits the same values, in the same order, as
    ``expand`` + ``get_path`` + ``replace_path`` (tests/filters/test_compiled_pipeline.py).
    """

    __slots__ = ("_every", "_general", "_last", "_parent", "head", "path", "single")

    def __init__(self, path: Path) -> None:
        self.path = path
        # The top-level key every value the path names lies under (None: it starts with
        # ``*``). The filters look it up themselves first: where it is absent (most paths,
        # in most events) there is nothing to do, and where the path is that one key
        # (``single``: installation_id) nothing more to walk.
        self.head = path[0] if path[0] != WILDCARD else None
        self.single = len(path) == 1 and self.head is not None
        self._parent = path[:-1]
        self._last = path[-1]
        self._every = self._last == WILDCARD and not has_wildcard(self._parent)
        self._general = has_wildcard(path) and not self._every

    def replace(self, data: Any, new_value: Callable[[Any], Any],
                all_values: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Replace each value the path names by ``new_value(value)``, unless that is ``KEEP``.

        ``all_values(obj)``, if given, does the same to every value of an object in one call
        (``counts.*``: a loop with no call per value).
        """
        if self._general:
            self._replace_expanded(data, new_value)
            return
        node = data
        for part in self._parent:  # get_path's loop, inline: this runs per path per event
            if isinstance(node, dict):
                node = node.get(part, _ABSENT)
                if node is _ABSENT:
                    return
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return
        if self._every:
            if all_values is not None and isinstance(node, dict):
                all_values(node)
            elif isinstance(node, dict):
                # Replacing values does not change the keys, so iterating while writing is safe.
                for key, value in node.items():
                    new = new_value(value)
                    if new is not KEEP:
                        node[key] = new
            elif isinstance(node, list):
                for index, value in enumerate(node):
                    new = new_value(value)
                    if new is not KEEP:
                        node[index] = new
            return
        last = self._last
        if isinstance(node, dict):
            value = node.get(last, _ABSENT)
            if value is not _ABSENT:
                new = new_value(value)
                if new is not KEEP:
                    node[last] = new
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            index = int(last)
            new = new_value(node[index])
            if new is not KEEP:
                node[index] = new

    def _replace_expanded(self, data: Any, new_value: Callable[[Any], Any]) -> None:
        for path in expand(data, self.path):
            parent = get_path(data, path[:-1], _ABSENT)
            last = path[-1]
            if isinstance(parent, dict):
                value = parent.get(last, _ABSENT)
                if value is not _ABSENT:
                    new = new_value(value)
                    if new is not KEEP:
                        parent[last] = new
            elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
                new = new_value(parent[int(last)])
                if new is not KEEP:
                    parent[int(last)] = new
