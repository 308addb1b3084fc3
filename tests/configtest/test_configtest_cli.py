"""``beacon-router test``: where it finds tests, what it prints, and its exit codes.

The command itself runs in a subprocess (``cli.main`` configures process-wide logging); the
finer points of its output are checked through ``router.configtest.main``, which it calls.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.configtest.command import main as run_tests
from router.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG = "backends:\n  out: {type: stdout}\n"
PASSING = "- {name: passes, input: {version: 1.4.2}, expect: {out: {data: {version: 1.4.2}}}}\n"
FAILING = "- {name: fails, input: {version: 1.4.2}, expect: {out: {data: {version: 2.0.0}}}}\n"


def beacon_router(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def main(argv: list[str]) -> int:
    """``beacon-router test`` in process: its exit code, 2 for a ConfigError as the CLI does."""
    config = argv[argv.index("--config") + 1]
    tests = [argv[i + 1] for i, a in enumerate(argv) if a == "--tests"]
    try:
        return run_tests(config, tests)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "router.yaml").write_text(CONFIG)
    return tmp_path


def test_passing_tests_in_the_side_file_exit_0(workdir, capsys):
    (workdir / "router.tests.yaml").write_text(PASSING)

    assert main(["test", "--config", "router.yaml"]) == 0
    assert capsys.readouterr().out == ("ok    passes\nrouter.yaml: 1 tests, 1 passed, 0 failed\n")


def test_a_failing_test_exits_1_and_prints_expected_and_actual(workdir, capsys):
    (workdir / "router.tests.yaml").write_text(PASSING + FAILING)

    assert main(["test", "--config", "router.yaml"]) == 1
    out = capsys.readouterr().out
    assert "ok    passes\nFAIL  fails  (router.tests.yaml:2)\n" in out
    assert '      out: received.data.version\n          expected: "2.0.0"\n' in out
    assert out.endswith("router.yaml: 2 tests, 1 passed, 1 failed\n")


def test_a_tests_section_in_the_config_runs_with_the_side_file(workdir, capsys):
    (workdir / "router.yaml").write_text(CONFIG + "tests:\n" + PASSING.replace("passes", "inline"))
    (workdir / "router.tests.yaml").write_text(PASSING)

    assert main(["test", "--config", "router.yaml"]) == 0
    assert "ok    inline\nok    passes\n" in capsys.readouterr().out


def test_tests_named_on_the_command_line_replace_the_configs_own(workdir, capsys):
    (workdir / "router.tests.yaml").write_text(FAILING)
    (workdir / "more.yaml").write_text(PASSING)

    assert main(["test", "--config", "router.yaml", "--tests", "more.yaml"]) == 0
    assert "fails" not in capsys.readouterr().out


def test_an_invalid_tests_file_exits_2_naming_file_line_and_key(workdir, capsys):
    (workdir / "router.tests.yaml").write_text(PASSING + "- {name: x, input: {}, expct: {}}\n")

    assert main(["test", "--config", "router.yaml"]) == 2
    err = capsys.readouterr().err
    assert "router.tests.yaml:2: [1].expct: unknown key" in err
    assert "router.tests.yaml:2: [1].expect: required key is missing" in err


def test_a_config_without_tests_exits_2_saying_where_to_put_them(workdir, capsys):
    assert main(["test", "--config", "router.yaml"]) == 2
    assert "no tests: add a `tests:` section, or cases in router.tests.yaml" in (
        capsys.readouterr().err
    )


def test_an_invalid_config_exits_2(workdir, capsys):
    (workdir / "router.yaml").write_text("backends:\n  out: {type: stdot}\n")
    (workdir / "router.tests.yaml").write_text(PASSING)

    assert main(["test", "--config", "router.yaml"]) == 2
    assert "router.yaml:2: backends.out.type: unknown backend type 'stdot'" in (
        capsys.readouterr().err
    )


def test_the_command_exits_0_when_the_shipped_default_configs_tests_pass():
    result = beacon_router("test", "--config", "config/router.yaml", cwd=REPO)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout


def test_the_command_exits_1_on_a_failing_test_and_2_on_an_invalid_one(workdir):
    (workdir / "fails.yaml").write_text(FAILING)
    (workdir / "invalid.yaml").write_text("- {name: x, input: {}}\n")

    failed = beacon_router("test", "-c", "router.yaml", "--tests", "fails.yaml", cwd=workdir)
    invalid = beacon_router("test", "-c", "router.yaml", "--tests", "invalid.yaml", cwd=workdir)

    assert failed.returncode == 1, failed.stderr
    assert "FAIL  fails  (fails.yaml:1)" in failed.stdout
    assert invalid.returncode == 2, invalid.stderr
    assert "invalid.yaml:1: [0].expect: required key is missing" in invalid.stderr
    assert "Traceback" not in invalid.stderr
