"""The redact filter: e-mail addresses, IP addresses and URLs in free text replaced by
placeholders, with a byte-level pre-check that skips the walk when nothing could match."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..event import _MISSING, Event, get_path, split_path
from ..speedups import speedups
from .base import Filter, Options, register
from .fields import FieldPath, replace_path

_H = "[0-9A-Fa-f]{1,4}"
_V4 = r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_V6_FORMS = [
    rf"(?:{_H}:){{7}}{_H}",
    rf"(?:{_H}:){{1,4}}:{_V4}",
    rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{_V4}",
    rf"(?:{_H}:){{1,6}}:{_H}",
    *(rf"(?:{_H}:){{1,{7 - n}}}(?::{_H}){{1,{n}}}" for n in range(2, 7)),
    rf"(?:{_H}:){{1,7}}:",
    rf":(?::{_H}){{1,7}}",
]
BUILTIN_PATTERNS: dict[str, tuple[str, str]] = {
    # name: (regex, replacement). The lookbehinds start a match only at the start of a token
    # (so each token is scanned once, not once per character) and, with the lookaheads, keep
    # these from firing inside longer tokens: 1.2.3.4.5, std::vector, 12:00:00 and MAC
    # addresses are not IP addresses. The ipv6 lookahead rejects most positions at once.
    "url": (r"(?<![\w+.-])[A-Za-z][\w+.-]*://[^\s\"'<>]*[^\s\"'<>.,;:!?)\]]", "[url]"),
    "email": (
        r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "[email]",
    ),
    "ipv6": (rf"(?<![\w:])(?=[0-9A-Fa-f]{{0,4}}:)(?:{'|'.join(_V6_FORMS)})(?![\w:])", "[ip]"),
    "ipv4": (rf"(?<![\w.])(?=\d{{1,3}}\.){_V4}(?!\.?\d)", "[ip]"),
}


_CONTAINERS = (dict, list)  # a tuple: isinstance with `dict | list` builds a union per call

# A string holding none of a pattern's characters cannot match it; checking that first (in C)
# spares the combined regex most short values: ids, names, versions without a scheme.
_TRIGGERS = {"url": ":", "email": "@", "ipv6": ":", "ipv4": "."}

# What a string must hold for each pattern to match somewhere in it: a URL has "://", an email
# "@", an IPv6 address "::" or seven colons (every compressed form has "::"), an IPv4 address
# three dots. Timestamps (two colons) and versions (two dots) are spared the regex this way.
_NEEDS: dict[str, Callable[[str], bool]] = {
    "url": lambda text: "://" in text,
    "email": lambda text: "@" in text,
    "ipv6": lambda text: "::" in text or text.count(":") >= 7,
    "ipv4": lambda text: text.count(".") >= 3,
}


def _could_match(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Whether one of the built-in ``patterns`` may match in a string (no false negatives)."""
    has_trigger = re.compile(f"[{re.escape(''.join(sorted({_TRIGGERS[p] for p in patterns})))}]")
    needs = [_NEEDS[p] for p in patterns]

    def could_match(text: str) -> bool:
        if has_trigger.search(text) is None:  # most strings: one search in C, and done
            return False
        return any(need(text) for need in needs)

    return could_match


class CustomPattern(BaseModel):
    """A user's pattern: matches become ``[<name>]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="matches become [name]")
    regex: str = Field(description="a Python regular expression")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            compiled = re.compile(v)
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from exc
        if compiled.match(""):
            raise ValueError("the regular expression matches the empty string")
        return v


class RedactOptions(Options):
    """Which ``fields`` (default: every string) and which ``patterns``/``custom`` to replace."""

    fields: list[FieldPath] | None = Field(
        None, min_length=1, description="paths to scrub (inside objects and lists too); "
                                        "default: every string of the event")
    patterns: list[Literal["email", "ipv4", "ipv6", "url"]] = Field(
        ["url", "email", "ipv6", "ipv4"], description="built-in patterns, replaced by [email], "
                                                      "[ipv4], [ipv6] → [ip], [url]")
    custom: list[CustomPattern] = Field([], description="own patterns")

    @model_validator(mode="after")
    def _something_to_find(self) -> RedactOptions:
        if not self.patterns and not self.custom:
            raise ValueError("give at least one of `patterns` or `custom`")
        return self


def combined_pattern(options: RedactOptions) -> tuple[re.Pattern[str], dict[str, str]]:
    """One regex for every pattern (URLs first, so an IP inside a URL goes with the URL)."""
    parts: list[tuple[str, str]] = []
    for name in ("url", "email", "ipv6", "ipv4"):
        if name in options.patterns:
            parts.append(BUILTIN_PATTERNS[name])
    parts.extend((c.regex, f"[{c.name}]") for c in options.custom)
    groups = {f"_redact{i}": replacement for i, (_, replacement) in enumerate(parts)}
    regex = "|".join(f"(?P<_redact{i}>{rx})" for i, (rx, _) in enumerate(parts))
    return re.compile(regex), groups


@register
class Redact(Filter):
    """Replace emails, IP addresses, URLs and custom patterns inside strings."""

    type = "redact"
    Options = RedactOptions

    def __init__(self, options: RedactOptions) -> None:
        super().__init__(options)
        self._pattern, self._replacements = combined_pattern(options)
        self._may_match = _could_match(options.patterns) if not options.custom else None
        self._paths = (
            [split_path(p) for p in options.fields] if options.fields is not None else None
        )

    def _replacement(self, match: re.Match[str]) -> str:
        # Each pattern's own group encloses any group inside it and so closes last: lastgroup
        # names the pattern that matched.
        return self._replacements[match.lastgroup or ""]

    def _sub(self, text: str) -> str:
        if self._may_match is not None and not self._may_match(text):
            return text
        return self._pattern.sub(self._replacement, text)

    def redact(self, value: Any) -> Any:
        """``value`` with every string inside it redacted; lists and objects are edited in place."""
        if isinstance(value, str):
            return self._sub(value)
        # One loop over an explicit stack, strings handled inline: on the ingest hot path this
        # runs for every value of every event, and a method call per value cost twice the work.
        sub, replacement, may_match = self._pattern.sub, self._replacement, self._may_match
        stack = [value] if isinstance(value, _CONTAINERS) else []
        while stack:
            node = stack.pop()
            for key, v in node.items() if isinstance(node, dict) else enumerate(node):
                if isinstance(v, str):
                    if may_match is None or may_match(v):
                        # (replacing a value does not disturb the iteration)
                        node[key] = sub(replacement, v)
                elif isinstance(v, _CONTAINERS):
                    stack.append(v)
        return value

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        if self._paths is None:
            if self._may_match is not None and nothing_to_redact(data):
                return event
            self.redact(data)
            return event
        for path in self._paths:
            value = get_path(data, path, _MISSING)
            if isinstance(value, str):
                replace_path(data, path, self._sub(value))
            elif isinstance(value, dict | list):
                self.redact(value)
        return event


# Three dots close enough for an IPv4 address: each within 13 characters of the one before
# (three digits of up to 4 bytes each in UTF-8, as ``\d`` takes any Unicode digit; counted in
# characters the bound only grows looser). The dots are consecutive: no dot in between.
_DOTTED_QUAD = re.compile(r"\.[^.]{0,12}\.[^.]{0,12}\.")


def nothing_to_redact_text(data: dict[str, Any]) -> bool:
    """True when no string in ``data`` can hold a built-in pattern; False means "maybe".

    Decided over the event's JSON text with a few scans in C, ~8 times cheaper on a typical
    beacon than visiting each string (bench/README.md, "redact"). Each test is implied by what
    ``_NEEDS`` asks of a single string, so nothing a pattern would replace is skipped.
    """
    try:
        # As text: `in` on a str is a memchr with no argument parsing (~0.3k instructions),
        # where bytes.find parses its arguments (~1.1k) and `in` on bytes first tries its
        # needle as an int (~1.8k, CPython 3.11). The ASCII decode costs ~1k.
        text = orjson.dumps(data).decode()
    except TypeError:  # not JSON (e.g. a YAML key that is not a string): visit the strings
        return False
    if "@" in text or "::" in text:
        return False
    if "/" in text and "://" in text:
        return False
    if "\\" in text and '\\"' in text:
        return False
    # orjson writes a colon outside a string only right after a key's closing quote, and with
    # no escaped quote in the text (checked above) no string holds `":`: the other colons are
    # in strings. An IPv6 address without "::" has 7.
    if text.count(":") - text.count('":') >= 6:
        return False
    # Most beacons have fewer than three dots and stop at the count; the regex's C scan is
    # ~2.5 times cheaper than a Python loop over the dots where there are more (PostHog events:
    # two version strings, bench/README.md, "redact's dotted quads").
    return "." not in text or text.count(".") < 3 or _DOTTED_QUAD.search(text) is None


# The C walk (router/_speedups.c) asks the same of the decoded values, without encoding them:
# 22.6k → 6.3k instructions per beacon for the whole step (bench/README.md, "Round six"). It
# judges each string on its own, so it says "maybe" less often than the text can.
nothing_to_redact: Callable[[Any], bool] = (
    speedups.nothing_to_redact if speedups is not None else nothing_to_redact_text)
