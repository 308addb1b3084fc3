"""Optional dependencies: installed with an extra, imported only by a config that uses them.

``pip install beacon-router`` serves the shipped config (SQLite spool and store) without them;
a config that needs one names it in ``beacon-router check`` (exit 2, file:line and key) instead of
failing on an ImportError deep in start-up:

- ``postgres`` (asyncpg): a ``type: store`` backend with a ``postgresql://`` URL;
- ``redis`` (redis, hiredis): ``spool: {type: redis}``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ConfigError
from .yamlsource import LinedYaml, Path

EXTRAS = {"postgres": "asyncpg", "redis": "redis"}
"""extra → the module whose import proves it is installed."""


def installed(extra: str) -> bool:
    """Whether ``extra``'s package imports (imported now, as its user would anyway)."""
    try:
        importlib.import_module(EXTRAS[extra])
    except ImportError:
        return False
    return True


def hint(extra: str) -> str:
    return f"pip install 'beacon-router[{extra}]'"


def needed(data: Any) -> list[tuple[Path, str, str]]:
    """(key path, extra, what needs it) for every optional dependency the raw config uses."""
    if not isinstance(data, dict):
        return []
    out: list[tuple[Path, str, str]] = []
    spool = data.get("spool")
    if isinstance(spool, dict) and spool.get("type") == "redis":
        out.append((("spool", "type"), "redis", "a Redis spool"))
    backends = data.get("backends")
    for name, spec in (backends.items() if isinstance(backends, dict) else ()):
        if not isinstance(spec, dict) or spec.get("type") != "store":
            continue
        url = spec.get("url")
        if isinstance(url, str) and url.startswith(("postgres://", "postgresql://")):
            out.append((("backends", name, "url"), "postgres", "a PostgreSQL store"))
    return out


def missing(doc: LinedYaml) -> list[ConfigError]:
    """A config error, at its key, for each optional dependency the config needs and lacks."""
    return [doc.error(path, f"{what} needs the {extra!r} extra, which is not installed: "
                            f"{hint(extra)}")
            for path, extra, what in needed(doc.data) if not installed(extra)]
