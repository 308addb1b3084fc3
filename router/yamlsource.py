"""Read a YAML config keeping the line of every key, and expand ``${VAR}`` references.

Interpolation (in string values, not keys), as in POSIX shells and docker compose:
``${VAR}`` (an error naming the variable if it is unset: a forgotten secret must not become an
empty string that some later check blames on the wrong key; ``${VAR:-}`` says "empty is fine"),
``${VAR:-default}`` (default if unset or empty),
``${VAR:+value}`` (value if set and non-empty, else empty), ``${VAR:?message}`` (error if unset or
empty) and ``$$`` for a literal ``$``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from .errors import ConfigError

Path = tuple[str | int, ...]
_REF = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+?])([^}]*))?\})")
_MAX_DEPTH = 64


class LinedYaml:
    """A parsed YAML document plus the line of every key path, for error messages."""

    def __init__(self, data: Any, lines: dict[Path, int], file: str) -> None:
        self.data, self.lines, self.file = data, lines, file

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line_of(path), key=format_path(path))


def format_path(path: Path) -> str:
    """``("backends", "posthog", "batch")`` → ``backends.posthog.batch``; ints as ``[i]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(file: str, env: Mapping[str, str] | None = None) -> LinedYaml:
    """Parse ``file``; raise ConfigError naming file and line on any problem."""
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", file=file) from exc
    return load_text(text, file, env)


def load_text(text: str, file: str = "<config>", env: Mapping[str, str] | None = None,
              *, interpolate: bool = True) -> LinedYaml:
    """Parse ``text``; ``interpolate=False`` keeps every ``$`` as written (config tests)."""
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from exc
    lines: dict[Path, int] = {}
    if node is None:
        return LinedYaml({}, lines, file)
    builder = _Builder(file, env, lines, interpolate)
    return LinedYaml(builder.build(node, ()), lines, file)


class _Builder:
    def __init__(self, file: str, env: Mapping[str, str], lines: dict[Path, int],
                 interpolate: bool = True) -> None:
        self.file, self.env, self.lines, self.interpolate = file, env, lines, interpolate
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > _MAX_DEPTH:
            raise ConfigError("config nested too deeply", file=self.file,
                              line=node.start_mark.line + 1, key=format_path(path))
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self._construct(node, path)
        if self.interpolate and isinstance(value, str) and node.tag == "tag:yaml.org,2002:str":
            return self._interpolate(value, node, path)
        return value

    def _construct(self, node: yaml.Node, path: Path, merge: bool = False) -> Any:
        """PyYAML's value for ``node`` (or, with ``merge``, its ``<<:`` keys resolved).

        An unknown tag (`!foo`), a tag on text it does not fit (`!!int x`) or a bad merge key
        is the file's mistake: a ConfigError naming the line (exit 2), never a traceback.
        Found by bench/fuzz/fuzz_config."""
        line, key = node.start_mark.line + 1, format_path(path) or None
        try:
            if merge:
                assert isinstance(node, yaml.MappingNode)
                self.constructor.flatten_mapping(node)
                return None
            return self.constructor.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc.problem or exc}", file=self.file, line=line,
                              key=key) from exc
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"invalid YAML value: {exc}", file=self.file, line=line,
                              key=key) from exc

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        self._construct(node, path, merge=True)  # resolves `<<: *anchor` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._construct(key_node, path)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError(f"keys must be strings, got {key!r}", file=self.file, line=line,
                                  key=format_path(path))
            if key in out:
                raise ConfigError("duplicate key", file=self.file, line=line,
                                  key=format_path((*path, key)))
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _interpolate(self, text: str, node: yaml.Node, path: Path) -> str:
        if "$" not in text:
            return text

        def expand(m: re.Match[str]) -> str:
            if m[1] == "$":
                return "$"
            name, op, arg = m[2], m[3], m[4] or ""
            value = self.env.get(name)
            if op is None:
                if value is None:
                    raise ConfigError(
                        f"environment variable {name} is not set (write ${{{name}:-}} if it may"
                        " be empty)", file=self.file, line=node.start_mark.line + 1,
                        key=format_path(path))
                return value
            if op == ":-":
                return value if value else arg
            if op == ":+":
                return arg if value else ""
            if not value:  # ":?"
                raise ConfigError(arg or f"environment variable {name} must be set",
                                  file=self.file, line=node.start_mark.line + 1,
                                  key=format_path(path))
            return value

        return _REF.sub(expand, text)
