"""Filters that decide whether an event goes on: validate, opt_out, sample (dedupe: dedupe.py)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import fastjsonschema
import orjson
import structlog
from pydantic import Field, field_validator

from ..errors import BadRequest, ConfigError
from ..event import _MISSING, Event, get_path, split_path
from .base import Filter, Options, register
from .fields import FieldPath
from .privacy import canonical_bytes

log = structlog.get_logger()

# --- validate ------------------------------------------------------------------------------------


class _NoRemoteRefs(Mapping[str, Callable[[str], Any]]):
    """fastjsonschema's ref handlers, for every URI scheme: refuse.

    Left alone, fastjsonschema downloads a ``$ref`` to any URL at startup; a schema must be
    self-contained so that what it checks is what is in the repository.
    """

    def __getitem__(self, scheme: str) -> Callable[[str], Any]:
        return self._refuse

    def __contains__(self, scheme: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    @staticmethod
    def _refuse(uri: str) -> Any:
        raise ValueError(f"$ref {uri!r} points outside the schema; schemas must be self-contained")


def compile_schema(path: str) -> Callable[[Any], Any]:
    """The validator for the JSON Schema file at ``path``; ValueError naming what is wrong."""
    try:
        with open(path, "rb") as fh:
            schema = orjson.loads(fh.read())
    except OSError as exc:
        raise ValueError(f"cannot read schema {path}: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"schema {path} is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict | bool):
        raise ValueError(f"schema {path} must be a JSON object")
    try:
        # use_default=False: validating must not quietly add fields to the event.
        return fastjsonschema.compile(schema, handlers=_NoRemoteRefs(), use_default=False)
    except Exception as exc:  # fastjsonschema signals bad schemas with many exception types
        raise ValueError(f"schema {path} is not a usable JSON Schema: {exc}") from exc


# Keywords whose meaning differs between validator implementations (regex dialects, format
# definitions): a schema using any of them is checked by fastjsonschema alone.
_DIALECT_KEYWORDS = frozenset(("format", "pattern", "patternProperties"))


def compile_fast_check(path: str) -> Callable[[Any], bool] | None:
    """A jsonschema-rs ``is_valid`` for the schema at ``path`` (~10x faster than fastjsonschema),
    or None: jsonschema-rs not installed (it comes with the ``fast`` extra), or the schema uses
    a keyword the two implementations read differently. Call after ``compile_schema`` passed."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    with open(path, "rb") as fh:
        schema = orjson.loads(fh.read())
    if _uses_keywords(schema, _DIALECT_KEYWORDS):
        return None
    try:
        return jsonschema_rs.validator_for(  # type: ignore[no-any-return]
            schema, retriever=_NoRemoteRefs._refuse).is_valid
    except Exception:  # a schema fastjsonschema takes but jsonschema-rs refuses: use the former
        return None


def _uses_keywords(node: Any, keywords: frozenset[str]) -> bool:
    if isinstance(node, dict):
        return any(k in keywords or _uses_keywords(v, keywords) for k, v in node.items())
    if isinstance(node, list):
        return any(_uses_keywords(v, keywords) for v in node)
    return False


class ValidateOptions(Options):
    """``schema`` (a JSON Schema file, draft-04/06/07) and ``on_invalid: drop | reject``."""

    schema_: str = Field(alias="schema", description="path of a JSON Schema file")
    on_invalid: Literal["drop", "reject"] = Field(
        "drop", description="drop: counted as invalid; reject: the request fails with 400")

    @field_validator("schema_")
    @classmethod
    def _usable(cls, v: str) -> str:
        compile_schema(v)  # so a bad schema fails `beacon-router check`, with file, line and key
        return v


def _field_name(exc: fastjsonschema.JsonSchemaValueException) -> str:
    # fastjsonschema names the root "data" ("data.platform.os"); ops know it as the event's data.
    name = exc.name or "data"
    return name.removeprefix("data.") if name != "data" else "(the event)"


@register
class Validate(Filter):
    """Check ``event.data`` against a JSON Schema; drop or reject (400) what does not match."""

    type = "validate"
    Options = ValidateOptions
    drop_reason = "invalid"

    def __init__(self, options: ValidateOptions) -> None:
        super().__init__(options)
        try:
            self._validate = compile_schema(options.schema_)
        except ValueError as exc:  # the file changed since the config was checked
            raise ConfigError(str(exc), file=options.schema_) from exc
        self._reject = options.on_invalid == "reject"
        self._is_valid = compile_fast_check(options.schema_)

    def __call__(self, event: Event) -> Event | None:
        # The fast check only ever accepts: anything it does not accept (or cannot read, e.g. a
        # value JSON has no type for) goes to fastjsonschema, which decides and says why.
        if self._is_valid is not None:
            try:  # (not contextlib.suppress: on this hot path it cost more than the check)
                valid = self._is_valid(event.data)
            except Exception:
                valid = False
            if valid:
                return event
        try:
            self._validate(event.data)
        except fastjsonschema.JsonSchemaValueException as exc:
            field = _field_name(exc)
            # The message may quote the event's keys, never its values; the log gets the path only.
            log.debug("event_invalid", field=field, rule=exc.rule)
            if self._reject:
                message = (exc.message or "").replace(exc.name or "data", field, 1)
                raise BadRequest(f"invalid event: {message} (schema rule {exc.rule})") from None
            return None
        return event


# --- opt_out -------------------------------------------------------------------------------------

_OFF_VALUES: list[Any] = [False, "false", "0", 0, "off", "no"]


class OptOutOptions(Options):
    """``headers`` (DNT / Sec-GPC), and the payload ``flag`` whose ``values`` mean "opted out"."""

    headers: bool = Field(True, description="drop when the request said DNT: 1 or Sec-GPC: 1")
    flag: FieldPath | None = Field(
        "telemetry", description="the payload field that opts out; null: headers only")
    values: list[str | bool | int | float | None] = Field(
        default_factory=lambda: list(_OFF_VALUES), min_length=1,
        description="values of `flag` that mean opted out (strings compared case-blind)"
    )


class _Matcher:
    """Membership that keeps JSON types apart (``false`` is not ``0``); strings ignore case."""

    def __init__(self, values: list[Any]) -> None:
        self.strings = {v.strip().lower() for v in values if isinstance(v, str)}
        self.bools = {v for v in values if isinstance(v, bool)}
        self.numbers = {v for v in values if isinstance(v, int | float) and not isinstance(v, bool)}
        self.null = any(v is None for v in values)

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in self.strings
        if isinstance(value, bool):
            return value in self.bools
        if isinstance(value, int | float):
            return value in self.numbers
        return value is None and self.null


@register
class OptOut(Filter):
    """Drop events whose sender opted out: DNT: 1 / Sec-GPC: 1, or ``"telemetry": false``."""

    type = "opt_out"
    Options = OptOutOptions
    drop_reason = "opted_out"

    def __init__(self, options: OptOutOptions) -> None:
        super().__init__(options)
        self._headers = options.headers
        self._flag = split_path(options.flag) if options.flag is not None else None
        self._off = _Matcher(options.values)

    def __call__(self, event: Event) -> Event | None:
        context = event.context  # None after the spool: the headers were checked at ingest
        if self._headers and context is not None and (context.dnt or context.gpc):
            return None
        flag = self._flag
        if flag is not None:
            # (a top-level flag, `telemetry`, without get_path's call; a bool, what clients
            # send, without _Matcher's)
            value = (event.data.get(flag[0], _MISSING) if len(flag) == 1
                     else get_path(event.data, flag, _MISSING))
            if value is True or value is False:
                if value in self._off.bools:
                    return None
            elif value is not _MISSING and value in self._off:
                return None
        return event


# --- sample --------------------------------------------------------------------------------------

_SPAN = 2**64


def unit_hash(value: Any, salt: bytes = b"") -> int:
    """A value's stable position in [0, 2**64): the same value always lands in the same place."""
    digest = hashlib.blake2b(canonical_bytes(value), digest_size=8, key=salt[:64]).digest()
    return int.from_bytes(digest, "big")


class SampleOptions(Options):
    """``rate`` in [0, 1]; with ``key``, the same key value is always kept or always dropped."""

    rate: float = Field(ge=0.0, le=1.0, description="the fraction kept")
    key: FieldPath | None = Field(
        None, description="the same value of this path is always kept or always dropped")
    salt: str = Field("", max_length=64, description="changes which values are picked")


@register
class Sample(Filter):
    """Keep a fraction ``rate`` of events: per ``key`` value when given, else at random."""

    type = "sample"
    Options = SampleOptions
    drop_reason = "sampled_out"

    def __init__(self, options: SampleOptions, *, rng: random.Random | None = None) -> None:
        super().__init__(options)
        self._rate = options.rate
        self._threshold = int(options.rate * _SPAN)  # kept: unit_hash(value) < threshold
        self._key = split_path(options.key) if options.key is not None else None
        self._salt = options.salt.encode("utf-8")
        self._random = (rng or random.Random()).random

    def __call__(self, event: Event) -> Event | None:
        if self._key is not None:
            value = get_path(event.data, self._key, _MISSING)
            if value is not _MISSING and value is not None:
                return event if unit_hash(value, self._salt) < self._threshold else None
        # No key, or an event without one: a coin flip keeps the same fraction.
        return event if self._random() < self._rate else None
