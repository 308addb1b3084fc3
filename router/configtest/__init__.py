"""``beacon-router test``: unit tests for a config, run through dry-run, so nothing is sent.

The tests live in the config's ``tests:`` section, in a side file next to it (``router.yaml`` →
``router.tests.yaml``), or in files named with ``--tests``. Each case gives one input beacon
(plus request headers and environment) and what should come out: dropped by which filter and
why, or per backend the event it receives, the body or requests it would send, or that it is
skipped. Expected values match as subsets, with ``matches`` / ``exists`` / ``equals`` / ``in``
matchers (:mod:`router.configtest.match`); the format is in :mod:`router.configtest.suite`.

Tests are read as written: no ``${VAR}`` expansion in them. The config is expanded with the
tests' ``env:`` only, never the process environment, so a test passes or fails the same on every
machine. Exit codes: 0 all passed, 1 a test failed, 2 the config or a tests file is invalid.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..yamlsource import load_text
from .runner import Outcome, Report, build_event, run, run_case
from .suite import Case, Suite, parse_suite, suite_errors

SECTION = "tests"


def side_file(config_file: str) -> Path:
    """A config's side tests file: ``config/router.yaml`` → ``config/router.tests.yaml``."""
    path = Path(config_file)
    return path.with_name(f"{path.stem}.tests{path.suffix or '.yaml'}")


def load_suites(config_file: str, tests_files: Sequence[str] = ()) -> list[Suite]:
    """The suites to run: the ``tests_files`` if given, else the config's section and side file."""
    if tests_files:
        return [_read(file, None) for file in tests_files]
    suites = [_read(config_file, SECTION)]
    side = side_file(config_file)
    if side.exists():
        suites.append(_read(str(side), None))
    return [s for s in suites if s is not None]


def _read(file: str, section: str | None) -> Any:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read tests: {exc.strerror or exc}", file=file) from exc
    doc = load_text(text, file, interpolate=False)
    if section is None:
        return parse_suite(doc, doc.data)
    if not isinstance(doc.data, dict) or section not in doc.data:
        return None
    return parse_suite(doc, doc.data[section], (section,))


def main(config_file: str, tests_files: Sequence[str] = ()) -> int:
    """Run the tests and print the report: 0 passed, 1 failed; ConfigError (exit 2) if invalid."""
    suites = load_suites(config_file, tests_files)
    if not any(s.cases for s in suites):
        raise ConfigError(
            f"no tests: add a `{SECTION}:` section, or cases in "
            f"{side_file(config_file)}, or name a file with --tests",
            file=config_file,
        )
    report = run(config_file, suites)
    sys.stdout.write(report.render())
    return 0 if report.ok else 1


__all__ = [
    "Case",
    "Outcome",
    "Report",
    "Suite",
    "build_event",
    "load_suites",
    "main",
    "parse_suite",
    "run",
    "run_case",
    "side_file",
    "suite_errors",
]
