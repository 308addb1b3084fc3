"""A config's tests as ops write them, validated with file, line and key like the config itself.

    env: {BEACON_HASH_KEY: a-test-key-of-16-chars-or-more}   # the config's whole environment
    cases:
      - name: a docker install's beacon is coarsened and hashed
        input: {installation_id: 2f1c…, version: 1.4.2, counts: {users: 37}}
        headers: {DNT: "1"}                    # optional: what the request said
        expect:
          pipeline: {data: {counts: {users: "11-50"}}}      # after the global pipeline
          archive: {data: {installation_id: {matches: '^[0-9a-f]{64}$'}}}
          posthog: skipped
      - name: DNT drops it
        input: {installation_id: x}
        headers: {DNT: "1"}
        expect: {dropped: {filter: opt_out, reason: opted_out}}

The document is either this mapping or just the list of cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import ConfigError, ConfigErrors
from ..yamlsource import LinedYaml, Path
from .match import MISSING, check_expected, is_operator

DEFAULT_RECEIVED_AT = "2026-01-01T12:00:00.000Z"
RESERVED = frozenset({"pipeline", "dropped"})  # keys of `expect:` that are not backend names
CONTENT = ("received", "body", "requests")  # what a backend's expectation may compare


def _text(value: object) -> object:
    # `DNT: 1` and `KEY: 0123456789` are numbers in YAML; environments and headers hold text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteOptions(_Strict):
    """The keys of a tests document: a shared ``env`` and the ``cases``."""

    env: dict[str, Text | None] = Field(
        {}, description="the environment the config is expanded with (the process's is ignored)"
    )
    cases: list[Any] = Field(min_length=1, description="the test cases, run in order")


class CaseOptions(_Strict):
    """The keys of one test case."""

    name: str = Field(min_length=1, description="what the case shows; printed on pass and fail")
    input: dict[str, Any] = Field(description="the beacon (one JSON object), as a client sends it")
    headers: dict[str, Text] = Field({}, description="request headers: DNT, Sec-GPC, User-Agent")
    env: dict[str, Text | None] = Field({}, description="added to the suite's env; null unsets")
    event: str = Field("beacon", description="the event name (PostHog capture: e.g. $pageview)")
    source: Literal["beacon", "posthog"] = Field("beacon", description="the ingest path")
    received_at: str = Field(DEFAULT_RECEIVED_AT, description="fixed, so outputs are stable")
    expect: dict[str, Any] = Field(description="pipeline / dropped / one entry per backend")


@dataclass(frozen=True, slots=True)
class DropExpect:
    """An expected drop: by which filter (type) and for which reason; None: any."""

    filter: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        by = f" by {self.filter}" if self.filter else ""
        return f"dropped{by}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True, slots=True)
class BackendExpect:
    """What one backend should make of the event."""

    outcome: Literal["sent", "skipped", "dropped"]
    skipped: Literal["disabled", "when"] | None = None
    dropped: DropExpect | None = None
    received: Any = MISSING  # the event after the backend's own filters (Event.to_dict())
    body: Any = MISSING  # the body of its one request
    requests: Any = MISSING  # every request: [{method, url, headers, body}]


@dataclass(frozen=True, slots=True)
class Case:
    """One validated test case."""

    name: str
    input: dict[str, Any]
    headers: Mapping[str, str]
    env: Mapping[str, str | None]
    event: str
    source: str
    received_at: str
    pipeline: Any  # MISSING: not checked
    dropped: DropExpect | None  # None: the event must pass the global pipeline
    backends: Mapping[str, BackendExpect]
    where: str  # "config/router.tests.yaml:12", for the report


@dataclass(frozen=True, slots=True)
class Suite:
    """The tests of one file (the config's ``tests:`` section or a side file)."""

    file: str
    env: Mapping[str, str | None]
    cases: tuple[Case, ...] = field(default=())


def parse_suite(doc: LinedYaml, value: Any, path: Path = ()) -> Suite:
    """Validate a tests document; raise ConfigError(s) naming file, line and key."""
    parser = _Parser(doc)
    suite = parser.suite(value, path)
    if parser.errors:
        raise parser.errors[0] if len(parser.errors) == 1 else ConfigErrors(parser.errors)
    assert suite is not None
    return suite


def suite_errors(doc: LinedYaml, value: Any, path: Path) -> list[ConfigError]:
    """The problems of a config's ``tests:`` section, for ``check`` (nothing runs)."""
    parser = _Parser(doc)
    parser.suite(value, path)
    return parser.errors


class _Parser:
    def __init__(self, doc: LinedYaml) -> None:
        self.doc = doc
        self.errors: list[ConfigError] = []

    def error(self, path: Path, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    def model(self, model: type[BaseModel], value: Any, path: Path) -> Any:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping")
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                self.error((*path, *err["loc"]), _message(err, model))
            return None

    def suite(self, value: Any, path: Path) -> Suite | None:
        cases_path = path if isinstance(value, list) else (*path, "cases")
        if isinstance(value, list):  # the short form: only the cases
            if not value:
                self.error(path, "has no cases")
                return None
            value = {"cases": value}
        options = self.model(SuiteOptions, value, path)
        if options is None:
            return None
        cases = [self.case(v, (*cases_path, i), options.env) for i, v in enumerate(options.cases)]
        seen: set[str] = set()
        for i, case in enumerate(cases):
            if case is None:
                continue
            if case.name in seen:
                self.error((*cases_path, i, "name"), f"two cases are named {case.name!r}")
            seen.add(case.name)
        return Suite(self.doc.file, options.env, tuple(c for c in cases if c is not None))

    def case(self, value: Any, path: Path, env: Mapping[str, str | None]) -> Case | None:
        options = self.model(CaseOptions, value, path)
        if options is None:
            return None
        expect = options.expect
        where = (*path, "expect")
        if not expect:
            self.error(where, "names nothing to check: give `dropped`, `pipeline` or a backend")
        dropped = self.drop(expect["dropped"], (*where, "dropped")) if "dropped" in expect else None
        if isinstance(dropped, DropExpect) and len(expect) > 1:
            self.error(
                where,
                "an event the pipeline drops reaches no backend: expect only "
                "`dropped` here, or `dropped: false`",
            )
        pipeline = expect.get("pipeline", MISSING)
        self.expected(pipeline, (*where, "pipeline"))
        backends = {}
        for name, want in expect.items():
            if name not in RESERVED:
                backend = self.backend(want, (*where, name))
                if backend is not None:
                    backends[name] = backend
        line = self.doc.line_of(path)
        return Case(
            name=options.name,
            input=options.input,
            headers=options.headers,
            env={**env, **options.env},
            event=options.event,
            source=options.source,
            received_at=options.received_at,
            pipeline=pipeline,
            dropped=dropped if isinstance(dropped, DropExpect) else None,
            backends=backends,
            where=f"{self.doc.file}:{line}" if line else self.doc.file,
        )

    def drop(self, value: Any, path: Path) -> DropExpect | bool | None:
        """``true`` / ``false`` / ``opt_out`` / ``{filter: opt_out, reason: opted_out}``."""
        if value is True:
            return DropExpect()
        if value is False:
            return False
        if isinstance(value, str) and value:
            return DropExpect(filter=value)
        if (
            isinstance(value, dict)
            and value
            and set(value) <= {"filter", "reason"}
            and all(isinstance(v, str) for v in value.values())
        ):
            return DropExpect(filter=value.get("filter"), reason=value.get("reason"))
        self.error(
            path, "must be true, false, a filter type (opt_out), or {filter: TYPE, reason: REASON}"
        )
        return None

    def backend(self, value: Any, path: Path) -> BackendExpect | None:
        if value in ("skipped", "sent", "dropped"):
            value = {value: True} if value != "sent" else {}
        if not isinstance(value, dict):
            self.error(
                path,
                "must be skipped, sent, dropped, or a mapping (received: / body: "
                "/ requests: / skipped: / dropped:)",
            )
            return None
        if value and (not value.keys() & {*CONTENT, "skipped", "dropped"} or is_operator(value)):
            value = {"received": value}  # the short form: what the backend receives
        unknown = sorted(set(value) - {*CONTENT, "skipped", "dropped"})
        for key in unknown:
            self.error(
                (*path, key),
                "unknown key; valid keys: body, dropped, received, "
                "requests, skipped (or only the fields of the event)",
            )
        if unknown:
            return None
        if "skipped" in value:
            if len(value) > 1:
                self.error(path, "a skipped backend gets nothing to compare: only `skipped`")
            if value["skipped"] not in (True, "disabled", "when"):
                self.error((*path, "skipped"), "must be true, disabled or when")
                return None
            reason = value["skipped"] if value["skipped"] is not True else None
            return BackendExpect("skipped", skipped=reason)
        if "dropped" in value:
            if len(value) > 1:
                self.error(path, "a dropped event is not sent: only `dropped`")
            drop = self.drop(value["dropped"], (*path, "dropped"))
            if drop is False:
                self.error((*path, "dropped"), "write `sent` to expect the backend to send")
            return BackendExpect("dropped", dropped=drop) if isinstance(drop, DropExpect) else None
        if "requests" in value and not isinstance(value["requests"], list):
            self.error((*path, "requests"), "must be a list, one entry per request")
        for key in CONTENT:
            self.expected(value.get(key, MISSING), (*path, key))
        return BackendExpect("sent", **{k: v for k, v in value.items() if k in CONTENT})

    def expected(self, value: Any, path: Path) -> None:
        if value is not MISSING:
            for sub, message in check_expected(value):
                self.error((*path, *sub), message)


def _message(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    if err["type"] == "extra_forbid" or err["type"] == "extra_forbidden":
        return f"unknown key; valid keys: {', '.join(sorted(model.model_fields))}"
    if err["type"] == "missing":
        return "required key is missing"
    return str(err["msg"]).removeprefix("Value error, ")
