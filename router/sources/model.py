"""What a source profile says in YAML (``sources.profiles``, ``config/sources/*.yaml``).

A profile names a product's client: which paths it posts to, how its beacons are recognised
(path, method, User-Agent pattern, payload shape: that order of precedence, docs/sources.md),
what it must be answered, and how its fields map onto the common beacon fields
(``installation_id``, ``version``, ``platform``, ``deployment_type``, ``counts``). This module
holds the pydantic models only; :mod:`router.sources.profile` compiles them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..conditions import Condition

_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_PATH_FIELD = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")
# A route as aiohttp takes it: literal segments and whole-segment {variables}.
_ROUTE = re.compile(r"^/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+|\{[A-Za-z_][A-Za-z0-9_]*\})?"
                    r"(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+|\{[A-Za-z_][A-Za-z0-9_]*\})?)*$")
_METHODS = frozenset({"POST", "PUT", "GET"})

GENERIC_PATH = "/beacon"
"""The router's own path: every profile with a User-Agent or shape test is recognised there."""
# The router's own paths, and the PostHog capture API's (router/web/paths.py; a test keeps the
# two in step): a profile may not take them.
RESERVED = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/api/stats",
                      "/dashboard", "/public/stats", "/capture", "/batch", "/e", "/i/v0/e",
                      "/track", "/engage", "/i/v1/analytics/events"})
RESERVED_PREFIXES = ("/admin/", "/dashboard/")


def _field_path(value: str) -> str:
    if not _PATH_FIELD.fullmatch(value):
        raise ValueError(f"{value!r} is not a field path (names joined by dots, e.g. cluster_info."
                         "cluster_uid)")
    return value


FieldPath = Annotated[str, AfterValidator(_field_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _shorthand(value: object) -> object:
    # `installation_id: uuid` is short for `installation_id: {field: uuid}`.
    return {"field": value} if isinstance(value, str) else value


class FieldSource(Strict):
    """Where one common field's value comes from: exactly one of field, header, path, value."""

    field: FieldPath | None = Field(
        None, description="a path in the product's payload; the value is moved (the product's "
                          "name for it disappears) unless `keep: true`")
    header: str | None = Field(None, description="a request header, e.g. User-Agent")
    path: str | None = Field(None, description="a {variable} of the profile's path")
    value: Any = Field(None, description="a constant, e.g. deployment_type: {value: kubernetes}")
    pattern: str | None = Field(
        None, description="a regular expression with one group: the group is the value; no "
                          "match: no value")
    keep: bool = Field(False, description="`field` only: copy instead of move")

    @model_validator(mode="after")
    def _one_source(self) -> FieldSource:
        given = [k for k in ("field", "header", "path", "value") if k in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of field, header, path, value")
        if self.keep and self.field is None:
            raise ValueError("`keep` applies to `field` only")
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise ValueError(f"pattern: bad regular expression: {exc}") from None
            if groups != 1:
                raise ValueError("pattern: needs exactly one (group), the value")
        return self


Source = Annotated[FieldSource, BeforeValidator(_shorthand)]


class MatchConfig(Strict):
    """How the profile's beacons are recognised, besides the path they arrive on."""

    methods: tuple[str, ...] = Field(("POST",), min_length=1,
                                     description="HTTP methods its client uses: POST, PUT, GET")
    user_agent: str | None = Field(
        None, description="a regular expression searched in the User-Agent header")
    shape: Condition | None = Field(
        None, description="a condition on the payload (the `when:` syntax), e.g. "
                          "{field: software.name, equals: mastodon}")

    @field_validator("methods")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in v)
        for method in upper:
            if method not in _METHODS:
                raise ValueError(f"{method!r}: one of {', '.join(sorted(_METHODS))}")
        return upper

    @field_validator("user_agent")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regular expression: {exc}") from None
        return v


class AnswerConfig(Strict):
    """What the client is answered once its beacons are durable."""

    status: int = Field(202, ge=200, le=299, description="a 2xx the product's client accepts")
    body: Any = Field(None, description="JSON body; default {\"accepted\": N}; a string is "
                                        "sent as text/plain")


class ProfileConfig(Strict):
    """One product's client (docs/sources.md)."""

    name: str = Field(pattern=_NAME, description="unique; a later profile of the same name "
                                                 "replaces an included one")
    product: str | None = Field(None, pattern=_NAME,
                                description="the event's `product`; default: the name")
    description: str = Field("", description="who sends this, for `check` and the docs")
    source: Literal["beacon", "posthog"] = Field(
        "beacon", description="beacon: served on `paths`; posthog: applies to events of the "
                              "PostHog capture API")
    paths: tuple[str, ...] = Field((), description="paths its client posts to ({variable} "
                                                   "segments allowed); /beacon is shared")
    match: MatchConfig = Field(MatchConfig(), description="method, User-Agent, payload shape")
    answer: AnswerConfig = Field(AnswerConfig(), description="status and body of the answer")
    fields: dict[FieldPath, Source] = Field(
        {}, description="common field ← where the product keeps it")
    drop: tuple[FieldPath, ...] = Field(
        (), description="the product's other identifiers, removed before anything is stored")
    event_id: FieldPath | None = Field(
        None, description="a field that is a true per-event id (the dedup key); none: every "
                          "accepted beacon is a new event")
    pipeline: bool = Field(True, description="false: skip the global pipeline (privacy "
                                             "filters included) for this profile's events")

    @field_validator("paths")
    @classmethod
    def _routes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for path in v:
            if not _ROUTE.match(path):
                raise ValueError(f"{path[:64]!r} is not a path: /segment/{{variable}}/…")
            if path.rstrip("/") in RESERVED or path.startswith(RESERVED_PREFIXES):
                raise ValueError(f"{path} is the router's own path")
        return v

    @model_validator(mode="after")
    def _paths_for_posthog(self) -> ProfileConfig:
        if self.source == "posthog" and self.paths:
            raise ValueError("a `source: posthog` profile takes PostHog's own paths; drop "
                             "`paths`")
        if self.source == "beacon" and not self.paths and self.match.user_agent is None \
                and self.match.shape is None:
            raise ValueError("give `paths`, or a `match.user_agent` or `match.shape` by which "
                             "it is recognised on /beacon")
        variables = {v for p in self.paths for v in re.findall(r"\{(\w+)\}", p)}
        for common, src in self.fields.items():
            if src.path is not None and src.path not in variables:
                raise ValueError(f"fields.{common}: no path has a {{{src.path}}} segment")
        return self

    @property
    def product_name(self) -> str:
        return self.product or self.name


__all__ = ["GENERIC_PATH", "AnswerConfig", "FieldSource", "MatchConfig", "ProfileConfig"]
