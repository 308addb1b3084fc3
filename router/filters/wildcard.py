"""``*`` in a field path: one segment, any key (``counts.*`` is every count GitLab sends).

A product's counts are keyed by names the router cannot list in advance (``counts.issues``,
``statistics.posts_count``); a filter given ``counts.*`` applies to each of them. ``*`` matches
the keys of an object and the indexes of a list; a path without ``*`` is returned as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Path = tuple[str, ...]
WILDCARD = "*"


def has_wildcard(path: Path) -> bool:
    return WILDCARD in path


def expand(data: Any, path: Path) -> Iterator[Path]:
    """The concrete paths in ``data`` that ``path`` names; nothing where a part is missing."""
    if not has_wildcard(path):
        yield path
        return
    at = path.index(WILDCARD)
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
        yield from expand(data, (*path[:at], key, *path[at + 1:]))
