"""The ``beacon-router test`` command: find a config's test suites and print their report."""


from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..yamlsource import load_text
from .runner import run
from .suite import Suite, parse_suite

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
