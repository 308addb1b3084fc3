"""Run a config's test cases through ``dry_run`` (nothing is sent) and compare the outcomes."""

from __future__ import annotations

import uuid as uuid_lib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import CIMultiDict

from ..config import Config
from ..config.loader import load
from ..dryrun import dry_run  # the command's own code path: tests see what dry-run prints
from ..errors import ConfigError
from ..event import Event, RequestContext
from .match import MISSING, Mismatch, match
from .suite import BackendExpect, Case, DropExpect, Suite

_SKIPPED = {
    "disabled": "skipped (disabled)",
    "when": "skipped (its when: condition does not match)",
}
_TEST_UUIDS = uuid_lib.UUID("6f1d3a52-94c6-4c1e-9a43-c0a3f0e1b7d2")  # namespace of case uuids


@dataclass
class Outcome:
    """One case's result: passed when it has no mismatches (or the run failed with ``error``)."""

    case: Case
    mismatches: list[tuple[str, Mismatch]] = field(default_factory=list)  # (subject, mismatch)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.error is None


@dataclass
class Report:
    """Every case's outcome, renderable as the text ``beacon-router test`` prints."""

    config_file: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def render(self) -> str:
        lines = []
        for o in self.outcomes:
            if o.passed:
                lines.append(f"ok    {o.case.name}")
                continue
            lines.append(f"FAIL  {o.case.name}  ({o.case.where})")
            if o.error:
                lines.append(f"      {o.error}")
            for subject, mismatch in o.mismatches:
                mismatch = Mismatch(
                    f"{subject}: {mismatch.path}" if mismatch.path else subject,
                    mismatch.expected,
                    mismatch.actual,
                    mismatch.diff,
                )
                lines += mismatch.render("      ")
        failed = sum(not o.passed for o in self.outcomes)
        lines.append(
            f"{self.config_file}: {len(self.outcomes)} tests, "
            f"{len(self.outcomes) - failed} passed, {failed} failed"
        )
        return "\n".join(lines) + "\n"


def run(config_file: str, suites: Iterable[Suite]) -> Report:
    """Run every case of ``suites`` against ``config_file``; ConfigError if it cannot load."""
    report = Report(config_file)
    configs: dict[tuple[tuple[str, str], ...], Config] = {}
    for suite in suites:
        for case in suite.cases:
            env = tuple(sorted((k, v) for k, v in case.env.items() if v is not None))
            if env not in configs:
                configs[env] = _load(config_file, dict(env), case)
            report.outcomes.append(run_case(configs[env], case))
    return report


def _load(config_file: str, env: dict[str, str], case: Case) -> Config:
    try:
        return load(config_file, env=env)
    except ConfigError as exc:
        raise ConfigError(
            f"the config does not load with the env of test {case.name!r} ({case.where}):\n{exc}"
        ) from exc


def run_case(config: Config, case: Case) -> Outcome:
    """What ``config`` makes of the case's input, compared with what the case expects."""
    unknown = sorted(set(case.backends) - set(config.backends))
    if unknown:
        raise ConfigError(
            f"expect names no backend of {config.file}: {', '.join(unknown)}; "
            f"its backends: {', '.join(config.backends) or 'none'}",
            file=case.where,
        )
    outcome = Outcome(case)
    try:
        result = dry_run(config, build_event(case))
    except Exception as exc:  # a filter or render() failed: that is this case's result
        outcome.error = f"the config failed on this input: {type(exc).__name__}: {exc}"
        return outcome
    pipeline = result["pipeline"]
    if "dropped" in pipeline:
        outcome.mismatches += _drop("pipeline", case.dropped, pipeline["dropped"])
        return outcome
    if case.dropped is not None:
        outcome.mismatches.append(("pipeline", Mismatch("", case.dropped.describe(), "passed")))
        return outcome
    if case.pipeline is not MISSING:
        outcome.mismatches += [("pipeline", m) for m in match(case.pipeline, pipeline["event"])]
    for name, want in case.backends.items():
        outcome.mismatches += [(name, m) for m in _backend(want, result["backends"][name])]
    return outcome


def build_event(case: Case) -> Event:
    """The case's input as ingest would make it, with a stable uuid and receive time."""
    data = orjson.loads(orjson.dumps(case.input))  # filters change data in place
    headers = CIMultiDict(case.headers)
    context = RequestContext(
        dnt=headers.get("DNT") == "1",
        gpc=headers.get("Sec-GPC") == "1",
        user_agent=headers.get("User-Agent"),
    )
    uuid = data.get("uuid") or str(uuid_lib.uuid5(_TEST_UUIDS, case.name))
    return Event.new(
        data,
        name=case.event,
        source=case.source,
        uuid=uuid,
        received_at=case.received_at,
        context=context,
    )


def _backend(want: BackendExpect, got: Mapping[str, Any]) -> list[Mismatch]:
    if "skipped" in got:
        by = "disabled" if got["skipped"] == "disabled" else "when"
        if want.outcome == "skipped" and want.skipped in (None, by):
            return []
        return [Mismatch("", _describe(want), _SKIPPED[by])]
    if "dropped" in got:
        if want.outcome == "dropped":
            return [m for _, m in _drop("", want.dropped, got["dropped"])]
        filter_type, _, reason = got["dropped"].partition(": ")
        return [Mismatch("", _describe(want), DropExpect(filter_type, reason).describe())]
    if want.outcome != "sent":
        n = len(got["requests"])
        return [Mismatch("", _describe(want), f"sent ({n} request{'s' * (n != 1)})")]
    out: list[Mismatch] = []
    if want.received is not MISSING:
        out += match(want.received, got["event"], "received")
    if want.body is not MISSING:
        requests = got["requests"]
        if len(requests) != 1:
            out.append(
                Mismatch(
                    "body",
                    "one request",
                    f"{len(requests)} requests: use `requests:` to check each",
                )
            )
        else:
            out += match(want.body, requests[0]["body"], "body")
    if want.requests is not MISSING:
        out += match(want.requests, got["requests"], "requests")
    return out


def _drop(subject: str, want: DropExpect | None, got: str) -> list[tuple[str, Mismatch]]:
    """Compare an expected drop with dry-run's ``"<filter type>: <reason>"``."""
    filter_type, _, reason = got.partition(": ")
    actual = DropExpect(filter_type, reason).describe()
    if want is None:
        return [(subject, Mismatch("", "passed", actual))]
    if (want.filter or filter_type) != filter_type or (want.reason or reason) != reason:
        return [(subject, Mismatch("", want.describe(), actual))]
    return []


def _describe(want: BackendExpect) -> str:
    if want.outcome == "skipped":
        return _SKIPPED.get(want.skipped or "", "skipped")
    if want.outcome == "dropped":
        return (want.dropped or DropExpect()).describe()
    return "sent"
