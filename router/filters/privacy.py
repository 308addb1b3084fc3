"""Privacy filters: hash (keyed HMAC), bucket (exact numbers → ranges), redact, round_time."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import itertools
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path as FsPath
from typing import Any, Literal

import orjson
import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..config import Duration
from ..errors import ConfigError
from ..event import _MISSING, Event, get_path, set_path, split_path
from . import register
from .base import Filter, Options
from .fields import FieldPath, replace_path

log = structlog.get_logger()


def canonical_bytes(value: Any) -> bytes:
    """The bytes a value is hashed by: a string as itself, anything else as compact JSON.

    So ``"abc"`` hashes like ``HMAC(key, "abc")`` computed anywhere else, and ``37`` like ``"37"``.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        return str(value).encode("utf-8")


# --- hash ----------------------------------------------------------------------------------------

_MIN_KEY = 16
_KEY_BYTES = 32


class HashOptions(Options):
    """``fields``, ``key`` (or a generated ``key_file``) and the hex ``length`` kept."""

    fields: list[FieldPath] = Field(min_length=1, description="paths whose values are hashed")
    key: SecretStr | None = Field(
        None, description="the HMAC key, at least 16 characters (openssl rand -hex 32); never "
                          "logged. Changing it changes every hash")
    key_file: str = Field("./data/hash.key",
                          description="read when `key` is empty; created (0600) if missing")
    length: int = Field(64, ge=8, le=64, description="hex characters kept")

    @field_validator("key", mode="before")
    @classmethod
    def _unset_is_none(cls, v: object) -> object:
        # `key: "${BEACON_HASH_KEY}"` expands to "" when the variable is unset: use the key file.
        return None if v == "" else v

    @field_validator("key")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < _MIN_KEY:
            raise ValueError(
                f"must be at least {_MIN_KEY} characters (generate one with `openssl rand -hex 32`)"
            )
        return v


def load_or_create_key(key_file: str) -> bytes:
    """The key stored in ``key_file``; created once (random, mode 0600, atomically) if absent.

    The file holds hex text and the key is that text, so copying the file's content into
    ``BEACON_HASH_KEY`` later keeps every hash the same.
    """
    path = FsPath(key_file)
    if not path.exists():
        _create_key(path)
    return _read_key(path)


def _create_key(path: FsPath) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hash.key.")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(_KEY_BYTES) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            # link() refuses to replace: when two processes start at once, both use the first
            # one's key, where a rename would let the last writer win behind the other's back.
            os.link(tmp, path)
        except FileExistsError:
            return
        finally:
            os.unlink(tmp)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the hash key file: {exc.strerror or exc}", file=str(path)
        ) from exc
    log.warning(
        "hash_key_generated",
        key_file=str(path),
        hint="back this file up: losing it changes every hash",
    )


def _read_key(path: FsPath) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the hash key file: {exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:  # its message would quote a byte of the key
        raise ConfigError("the hash key file is not UTF-8 text", file=str(path)) from exc
    if len(text) < _MIN_KEY:
        raise ConfigError(
            f"the hash key file holds under {_MIN_KEY} characters; restore it, or "
            "delete it to generate a new key (every hash changes)",
            file=str(path),
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("hash_key_file_readable_by_others", key_file=str(path), hint="chmod 600 it")
    return text.encode("utf-8")


def _fsync_dir(directory: FsPath) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories; the file itself is already synced
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@register
class Hash(Filter):
    """Replace values with a keyed HMAC-SHA256 (hex): stable, and unlinkable without the key."""

    type = "hash"
    Options = HashOptions

    def __init__(self, options: HashOptions) -> None:
        super().__init__(options)
        key = (
            options.key.get_secret_value().encode("utf-8")
            if options.key is not None
            else load_or_create_key(options.key_file)
        )
        self._mac = hmac.new(key, digestmod=hashlib.sha256)  # keyed once; copied per value
        self._paths = [split_path(p) for p in options.fields]
        self._length = options.length

    def digest(self, value: Any) -> str:
        """The hex HMAC of a value's canonical bytes, truncated to ``length``."""
        mac = self._mac.copy()
        mac.update(canonical_bytes(value))
        return mac.hexdigest()[: self._length]

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for path in self._paths:
            value = get_path(data, path, _MISSING)
            if value is not _MISSING and value is not None:  # null carries nothing to hide
                replace_path(data, path, self.digest(value))
        return event


# --- bucket --------------------------------------------------------------------------------------

Number = int | float
_NUMERIC = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)


def as_number(value: Any) -> Number | None:
    """A finite number from a number or a numeric string; None for anything else (incl. bools)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64 and _NUMERIC.fullmatch(value):
        text = value.strip()
        try:
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _fmt(x: Number) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def default_labels(edges: list[Number]) -> tuple[list[str], str | None]:
    """Labels for the ``len(edges) + 1`` buckets, plus the label for values below 0 (or None).

    Edges are inclusive upper bounds. All-integer edges describe whole numbers: ``[10, 50, 200]``
    → ``0-10, 11-50, 51-200, 201+`` and ``<0``. Any float edge switches to ``0-0.5, 0.5-1.5,
    >1.5`` (each range excludes its lower end). A negative first edge makes the first label
    ``<=-10`` and leaves no ``<0`` bucket.
    """
    integral = all(isinstance(e, int) for e in edges)
    first, last = edges[0], edges[-1]
    below = "<0" if first >= 0 else None
    labels = [
        f"0-{_fmt(first)}" if first > 0 else _fmt(first) if first == 0 else f"<={_fmt(first)}"
    ]
    for lo, hi in itertools.pairwise(edges):
        if integral:
            labels.append(_fmt(hi) if lo + 1 == hi else f"{_fmt(lo + 1)}-{_fmt(hi)}")
        else:
            labels.append(f"{_fmt(lo)}-{_fmt(hi)}")
    labels.append(f"{_fmt(last + 1)}+" if integral else f">{_fmt(last)}")
    return labels, below


class BucketOptions(Options):
    """``field`` or ``fields``, strictly increasing ``edges``, optional ``labels`` / ``target``."""

    field: FieldPath | None = Field(None, description="one path (or `fields`)")
    fields: list[FieldPath] | None = Field(None, min_length=1,
                                           description="several paths sharing the edges")
    edges: list[int | float] = Field(
        min_length=1, description="strictly increasing inclusive upper bounds: [10, 50] → "
                                  "0-10, 11-50, 51+")
    labels: list[str] | None = Field(None, description="own names, one more than `edges`")
    target: FieldPath | None = Field(
        None, description="write the label here and keep the number (with `field` only)")

    @field_validator("edges", mode="before")
    @classmethod
    def _numbers_only(cls, v: object) -> object:
        if isinstance(v, list):
            for i, e in enumerate(v):
                if isinstance(e, bool) or not isinstance(e, int | float) or not math.isfinite(e):
                    raise ValueError(f"edge {i} ({e!r}) is not a finite number")
        return v

    @field_validator("edges")
    @classmethod
    def _increasing(cls, v: list[Number]) -> list[Number]:
        for i, (a, b) in enumerate(itertools.pairwise(v)):
            if not a < b:
                raise ValueError(f"must be strictly increasing; edge {i + 1} ({b}) follows {a}")
        return v

    @field_validator("labels")
    @classmethod
    def _one_per_bucket(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        edges = info.data.get("edges")
        if v is not None and edges is not None and len(v) != len(edges) + 1:
            raise ValueError(f"needs {len(edges) + 1} labels (one more than edges), got {len(v)}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> BucketOptions:
        if (self.field is None) == (self.fields is None):
            raise ValueError("give exactly one of `field` or `fields`")
        if self.target is not None and self.fields is not None and len(self.fields) > 1:
            raise ValueError("`target` needs a single `field`")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.field] if self.field is not None else list(self.fields or [])


@register
class Bucket(Filter):
    """Replace exact numbers by the range they fall in: with edges [10, 50, 200], 37 → "11-50"."""

    type = "bucket"
    Options = BucketOptions

    def __init__(self, options: BucketOptions) -> None:
        super().__init__(options)
        self._edges = list(options.edges)
        labels, below = (
            (list(options.labels), None)
            if options.labels is not None
            else default_labels(self._edges)
        )
        self.labels: tuple[str, ...] = tuple(labels)
        """One label per bucket, lowest first: bucket i holds edges[i-1] < value <= edges[i]."""
        self.below_label: str | None = below
        """The label of values below 0 when the default labels start at 0, else None."""
        self._paths = [split_path(p) for p in options.paths]
        self._target = split_path(options.target) if options.target is not None else None

    def label(self, value: Any) -> str | None:
        """The bucket label of a number or numeric string; None when the value is not one."""
        number = as_number(value)
        if number is None:
            return None
        if self.below_label is not None and number < 0:
            return self.below_label
        # bisect_left finds i with edges[i-1] < number <= edges[i]: edges are upper bounds.
        return self.labels[bisect.bisect_left(self._edges, number)]

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for path in self._paths:
            value = get_path(data, path, _MISSING)
            if value is _MISSING:
                continue
            label = self.label(value)
            if label is None:
                continue
            if self._target is not None:
                set_path(data, self._target, label)
            else:
                replace_path(data, path, label)
        return event


# --- redact --------------------------------------------------------------------------------------

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


def nothing_to_redact(data: dict[str, Any]) -> bool:
    """True when no string in ``data`` can hold a built-in pattern; False means "maybe".

    Decided over the event's JSON text with a few scans in C, ~8 times cheaper on a typical
    beacon than visiting each string (bench/README.md, "redact"). Each test is implied by what
    ``_NEEDS`` asks of a single string, so nothing a pattern would replace is skipped.
    """
    try:
        text = orjson.dumps(data)
    except TypeError:  # not JSON (e.g. a YAML key that is not a string): visit the strings
        return False
    if b"://" in text or b"@" in text or b"::" in text or b'\\"' in text:
        return False
    # orjson writes a colon outside a string only right after a key's closing quote, and with
    # no escaped quote in the text (checked above) no string holds `":`: the other colons are
    # in strings. An IPv6 address without "::" has 7.
    if text.count(b":") - text.count(b'":') >= 6:
        return False
    return not _dotted_quad_possible(text)


def _dotted_quad_possible(text: bytes) -> bool:
    """Whether three dots lie close enough for an IPv4 address: each within 13 bytes of the one
    before (three digits of up to 4 bytes each in UTF-8, as ``\\d`` takes any Unicode digit)."""
    if text.count(b".") < 3:
        return False
    before, last = -100, -100
    at = text.find(b".")
    while at >= 0:
        if at - last <= 13 and last - before <= 13:
            return True
        before, last = last, at
        at = text.find(b".", at + 1)
    return False


# --- round_time ----------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_THRESHOLD = 1e11  # larger epoch numbers are milliseconds (1e11 s is the year 5138)
_EPOCH_TEXT = re.compile(r"\s*[+-]?\d+(?:\.\d+)?\s*", re.ASCII)


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text or epoch seconds/milliseconds; None if not one."""
    try:
        if isinstance(value, str):
            if _EPOCH_TEXT.fullmatch(value):
                return parse_time(float(value))
            dt = datetime.fromisoformat(value.strip())
            return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)  # naive: read as UTC
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
            return _EPOCH + timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        pass
    return None


class RoundTimeOptions(Options):
    """``fields`` (default ``[timestamp]``) floored to a multiple of ``to`` (at least 1s)."""

    fields: list[FieldPath] = Field(["timestamp"], min_length=1,
                                    description="ISO 8601 or epoch (s or ms) timestamps")
    to: Duration = Field(ge=1.0, description="floored to a multiple of this: 1m, 1h, 1d")

    @field_validator("to")
    @classmethod
    def _whole_seconds(cls, v: float) -> float:
        if not v.is_integer():
            raise ValueError("must be a whole number of seconds (e.g. 1m, 1h, 1d)")
        return v


@register
class RoundTime(Filter):
    """Floor timestamps to ``to`` (1m, 1h, 1d) counted from the Unix epoch; output ISO 8601 UTC."""

    type = "round_time"
    Options = RoundTimeOptions

    def __init__(self, options: RoundTimeOptions) -> None:
        super().__init__(options)
        self._step = timedelta(seconds=options.to)
        self._seconds = int(options.to)
        # Every UTC day starts at a multiple of such a step from the epoch, so flooring within
        # the day is enough: integer arithmetic instead of timedelta arithmetic and isoformat.
        self._within_day = 86400 % self._seconds == 0
        self._paths = [split_path(p) for p in options.fields]

    def floor(self, value: Any) -> str | None:
        """The floored ISO 8601 UTC text (``2024-01-01T12:00:00Z``), or None if unparseable."""
        dt = parse_time(value)
        if dt is None:
            return None
        try:
            if self._within_day:
                dt = dt.astimezone(UTC)
                s = dt.hour * 3600 + dt.minute * 60 + dt.second
                s -= s % self._seconds
                return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
                        f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z")
            floored = _EPOCH + ((dt - _EPOCH) // self._step) * self._step
        except OverflowError:
            return None
        return floored.isoformat(timespec="seconds").replace("+00:00", "Z")

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        for path in self._paths:
            value = get_path(data, path, _MISSING)
            if value is _MISSING:
                continue
            floored = self.floor(value)
            if floored is not None:
                replace_path(data, path, floored)
        return event
