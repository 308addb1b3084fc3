"""Config loading: units, ${VAR} interpolation, and errors that name file, line and key."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from router.config import masked
from router.config.loader import load, loads
from router.errors import ConfigError
from router.units import parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("2s", 2), ("10m", 600), ("72h", 259200), ("400d", 34560000), (5, 5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("512KiB", 524288), ("1MiB", 1048576), ("10MB", 10_000_000), (1024, 1024), ("2 GiB", 2 << 30)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["2 fortnights", "-1s", "", True])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_env_interpolation_with_defaults():
    text = """
    server: {listen: "${LISTEN:-127.0.0.1:9999}", max_body: "${MAX:-512KiB}"}
    spool: {path: "${SPOOL}"}
    """
    config = loads(textwrap.dedent(text), env={"SPOOL": "/tmp/x.db"})
    assert config.server.port == 9999
    assert config.server.max_body == 512 * 1024
    assert config.spool.path == "/tmp/x.db"


def test_enabled_plus_interpolation_switches_a_backend_on_only_when_the_variable_is_set():
    text = """
    backends:
      maybe: {type: router.testing:MockBackend, enabled: "${KEY:+true}"}
    """
    assert not loads(text, env={}).backends["maybe"].enabled
    assert loads(text, env={"KEY": "k"}).backends["maybe"].enabled


def error_of(text: str, file: str = "router.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text).lstrip(), file=file, env={})
    return str(info.value)


def test_unknown_key_names_file_line_and_key_path():
    message = error_of("""
    server:
      listen: 0.0.0.0:8080
      max_bodee: 1MiB
    """)
    assert message.startswith("router.yaml:3: server.max_bodee: unknown key")
    assert "max_body" in message  # lists the valid keys


def test_bad_value_deep_in_a_backend_names_its_key_path():
    message = error_of("""
    backends:
      posthog:
        type: router.testing:MockBackend
        batch:
          max_events: 0
    """)
    assert message.startswith("router.yaml:5: backends.posthog.batch.max_events:")
    assert "greater than 0" in message


def test_unknown_filter_type_lists_the_valid_ones():
    message = error_of("pipeline:\n  - {type: hsah}\n")
    assert "router.yaml:2: pipeline[0].type: unknown filter type 'hsah'" in message
    assert "hash" in message


def test_every_error_is_reported_at_once():
    message = error_of("""
    server: {listen: nowhere}
    spool: {type: tape}
    """)
    assert "server.listen" in message and "spool.type" in message


def test_yaml_syntax_error_names_the_line():
    assert error_of("server:\n  listen: [oops\n").startswith("router.yaml:3: invalid YAML")


@pytest.mark.parametrize("text", [
    "!0' b",                                  # found by bench/fuzz/fuzz_config: a traceback
    "server:\n  max_events: !!int lots\n",
    "server:\n  max_body: !!float nope\n",
    "server:\n  listen: !python/object:os.system x\n",
    "!con-router x: 1\n",                  # found by fuzz_config's second pass: a tagged key
    "a: &x 1\nb:\n  <<: *x\n",             # a merge key that is not a mapping
    "? [a, b]\n: 1\n",                      # a key that is a sequence
])
def test_a_yaml_tag_that_does_not_fit_is_a_config_error_naming_the_line(text):
    assert error_of(text).startswith("router.yaml:")  # a ConfigError with its line: exit 2


def test_duplicate_keys_are_errors_not_silently_overwritten():
    assert "duplicate key" in error_of("server: {}\nserver: {}\n")


def test_required_variable_reports_where_it_is_used():
    message = error_of('backends:\n  x: {type: webhook, url: "${HOOK_URL:?set HOOK_URL}"}\n')
    assert message == "router.yaml:2: backends.x.url: set HOOK_URL"


def test_masked_hides_secrets_and_url_passwords():
    raw = {"backends": {"p": {"api_key": "phc_secret", "url": "postgresql://u:pw@db/x",
                              "headers": {"Authorization": "Bearer t"}, "host": "h"}}}
    shown = masked(raw)["backends"]["p"]
    assert shown["api_key"] == "***"
    assert shown["url"] == "postgresql://u:***@db/x"
    assert shown["headers"]["Authorization"] == "***"
    assert shown["host"] == "h"


def test_shipped_default_config_is_valid():
    config = load("config/router.yaml")
    assert config.spool.type == "sqlite"
    assert "archive" in config.enabled_backends


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_check_exits_0_for_a_valid_config():
    result = run_cli("check", "--config", "config/router.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_exits_2_with_file_line_key_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  listen: 0.0.0.0:8080\n  wrokers: 2\n")
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: server.wrokers: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_exits_2_for_a_missing_file(tmp_path):
    result = run_cli("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read config" in result.stderr


def test_check_show_masks_secrets(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text('backends:\n  hook: {type: webhook, url: "http://127.0.0.1:1/x", '
                   'secret: "${HOOK_SECRET}"}\n')
    import os
    env = {**os.environ, "HOOK_SECRET": "s3cr3t-value"}
    result = run_cli("check", "--config", str(cfg), "--show", env=env)
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout
    assert "***" in result.stdout


def test_a_source_condition_limits_a_filter_to_beacons():
    from router.event import Event
    from router.filters import Pipeline

    config = loads("pipeline:\n  - {type: drop, fields: [x], when: {source: beacon}}\n")
    pipeline = Pipeline(config.pipeline)
    beacon = pipeline(Event.new({"x": 1, "y": 2}))
    captured = pipeline(Event.new({"x": 1, "y": 2}, source="posthog"))
    assert beacon is not None and beacon.data == {"y": 2}
    assert captured is not None and captured.data == {"x": 1, "y": 2}


def test_source_cannot_be_mixed_with_a_field_test():
    assert "stands alone" in error_of(
        "pipeline:\n"
        "  - {type: drop, fields: [x], when: {source: beacon, field: a, exists: true}}\n")


def test_reject_is_refused_in_a_backend_filter_where_no_client_can_be_answered():
    message = error_of("""
    backends:
      b:
        type: router.testing:MockBackend
        filters:
          - {type: validate, schema: config/schemas/beacon-v1.json, on_invalid: reject}
    """)
    assert "backends.b.filters[0].on_invalid: `reject` only works in the global pipeline" \
        in message
