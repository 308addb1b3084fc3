"""The command as ops meet it: ``python -m router``, ``$BEACON_ROUTER_CONFIG``, and an unset
``${VAR}`` reported as what it is, at its file:line, by ``beacon-router check``."""

from __future__ import annotations

import os
import subprocess
import sys

from support import REPO

HOOK = """\
backends:
  hook:
    type: webhook
    url: "${HOOK_URL}"
"""


def router(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PYTHONPATH": REPO, "PATH": os.environ["PATH"]}
    return subprocess.run([sys.executable, "-m", "router", *args], cwd=cwd, env=base | (env or {}),
                          capture_output=True, text=True, timeout=60)


def test_an_unset_variable_is_named_at_its_file_and_line(tmp_path):
    (tmp_path / "router.yaml").write_text(HOOK)
    done = router("check", "--config", "router.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert ("router.yaml:4: backends.hook.url: environment variable HOOK_URL is not set"
            in done.stderr)
    assert "http:// URL" not in done.stderr  # not blamed on the (empty) URL any more


def test_a_set_variable_and_an_explicit_empty_default_pass(tmp_path):
    (tmp_path / "router.yaml").write_text(HOOK + '    secret: "${HOOK_SECRET:-}"\n')
    done = router("check", "--config", "router.yaml", cwd=tmp_path,
                  env={"HOOK_URL": "http://127.0.0.1:9/hook"})
    assert done.returncode == 0, done.stderr


def test_beacon_router_config_selects_the_config_when_config_is_absent(tmp_path):
    (tmp_path / "elsewhere.yaml").write_text(HOOK)
    done = router("check", cwd=tmp_path, env={"BEACON_ROUTER_CONFIG": "elsewhere.yaml",
                                              "HOOK_URL": "http://127.0.0.1:9/hook"})
    assert done.returncode == 0 and done.stdout.startswith("elsewhere.yaml: OK"), done.stderr
    # --config still wins over the variable
    (tmp_path / "given.yaml").write_text("backends: {out: {type: stdout}}\n")
    done = router("check", "--config", "given.yaml", cwd=tmp_path,
                  env={"BEACON_ROUTER_CONFIG": "elsewhere.yaml"})
    assert done.returncode == 0 and done.stdout.startswith("given.yaml: OK"), done.stderr


def test_python_dash_m_router_is_the_command():
    done = router("--version", cwd=REPO)
    assert done.returncode == 0 and done.stdout.startswith("beacon-router ")
