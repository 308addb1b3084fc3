"""Build the profiles from ``sources.include`` (profile files) and ``sources.profiles``.

Included files are found by glob, relative to the working directory as every other path of the
config is (``config/sources/*.yaml`` in the shipped one). A file holds one profile, or
``profiles:`` with several. A profile in ``sources.profiles`` comes first in precedence and
replaces an included one of the same name: that is how a user changes a shipped profile without
editing it. Every error names the file, line and key.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..yamlsource import LinedYaml, Path, load_file
from .model import ProfileConfig
from .profile import Profile
from .resolve import Profiles


def load_profiles(inline: Sequence[ProfileConfig], include: Sequence[str], doc: LinedYaml,
                  errors: list[ConfigError], env: Mapping[str, str] | None = None) -> Profiles:
    """The profiles of a config: ``inline`` (already validated) first, then the included files.

    Errors are appended to ``errors``; what could be read is returned all the same."""
    profiles: list[Profile] = []
    names: dict[str, str] = {}
    for i, config in enumerate(inline):
        where = ("sources", "profiles", i)
        origin = f"{doc.file}:{doc.line_of(where)}"
        if config.name in names:
            errors.append(doc.error((*where, "name"), f"{config.name!r} is already declared at "
                                                      f"{names[config.name]}"))
            continue
        names[config.name] = origin
        profiles.append(Profile(config, origin))
    overridden = set(names)
    for i, pattern in enumerate(include):
        files = sorted(glob.glob(pattern))
        if not files:
            errors.append(doc.error(("sources", "include", i),
                                    f"{pattern!r} matches no file (paths are relative to the "
                                    "working directory)"))
        for file in files:
            for config, origin in _read(file, errors, env):
                if config.name in overridden:
                    continue  # the user's own profile of that name stands
                if config.name in names:
                    errors.append(ConfigError(f"{config.name!r} is already declared at "
                                              f"{names[config.name]}", file=file,
                                              line=int(origin.rsplit(":", 1)[1] or 0) or None,
                                              key="name"))
                    continue
                names[config.name] = origin
                profiles.append(Profile(config, origin))
    posthog = [p for p in profiles if p.config.source == "posthog"]
    if len(posthog) > 1:
        errors.append(doc.error(("sources",), "only one profile may have `source: posthog`; "
                                              f"found {', '.join(p.name for p in posthog)}"))
    return Profiles(profiles)


def _read(file: str, errors: list[ConfigError], env: Mapping[str, str] | None
          ) -> list[tuple[ProfileConfig, str]]:
    try:
        doc = load_file(file, env)
    except ConfigError as exc:
        errors.append(exc)
        return []
    data = doc.data
    listed = isinstance(data, dict) and "profiles" in data
    entries: list[tuple[Any, Path]] = (
        [(data, ())] if not listed else
        [(p, ("profiles", i)) for i, p in enumerate(data["profiles"] or [])])
    if listed and set(data) != {"profiles"}:
        errors.append(doc.error((), "a file with `profiles:` holds nothing else"))
        return []
    if listed and not entries:
        errors.append(doc.error(("profiles",), "lists no profile"))
    out = []
    for entry, where in entries:
        if not isinstance(entry, dict):
            errors.append(doc.error(where, "a profile is a mapping (name, paths, match, …)"))
            continue
        try:
            config = ProfileConfig.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                errors.append(doc.error((*where, *err["loc"]), _message(err)))
            continue
        out.append((config, f"{file}:{doc.line_of(where)}"))
    return out


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key; see docs/sources.md for a profile's keys"
    if err["type"] == "missing":
        return "required key is missing"
    return str(err["msg"]).removeprefix("Value error, ")

