"""Filters built the way the router builds them: YAML → router.config.loads → Pipeline."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from router.config.loader import loads
from router.errors import ConfigError, ConfigErrors
from router.event import Event, RequestContext
from router.filters import FILTERS, Pipeline

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config" / "schemas" / "beacon-v1.json"
KEY = "0123456789abcdef0123456789abcdef"

DESIGN_PIPELINE = f"""
pipeline:
  - {{type: validate, schema: {SCHEMA}}}
  - {{type: opt_out}}
  - {{type: drop, fields: [hostname, admin_email]}}
  - {{type: hash, fields: [installation_id], key: "${{BEACON_HASH_KEY}}"}}
  - {{type: bucket, field: counts.users, edges: [10, 50, 200]}}
"""


def pipeline(yaml_text: str, env: dict[str, str] | None = None) -> tuple[Pipeline, list[str]]:
    drops: list[str] = []
    config = loads(yaml_text, file="router.yaml", env=env or {})
    built = Pipeline(config.pipeline, on_drop=lambda name, reason: drops.append(f"{name}:{reason}"))
    return built, drops


def test_design_pipeline_makes_the_operately_beacon_privacy_safe() -> None:
    run, drops = pipeline(DESIGN_PIPELINE, env={"BEACON_HASH_KEY": KEY})
    beacon = {
        "installation_id": "5b0f6d1c-6f4e-4c43-9d0c-2b7f8a9d1e11",
        "version": "1.4.2",
        "hostname": "ops.example.com",
        "admin_email": "root@example.com",
        "counts": {"users": 37},
    }
    event = run(Event.new(beacon))
    assert event is not None and drops == []
    expected_id = hmac.new(
        KEY.encode(), b"5b0f6d1c-6f4e-4c43-9d0c-2b7f8a9d1e11", hashlib.sha256
    ).hexdigest()
    assert event.data == {
        "installation_id": expected_id,
        "version": "1.4.2",
        "counts": {"users": "11-50"},
    }


def test_design_pipeline_lets_other_products_payloads_through() -> None:
    run, drops = pipeline(DESIGN_PIPELINE, env={"BEACON_HASH_KEY": KEY})
    gitlab = {"uuid": "x", "hostname": "gl.example.com", "version": "13.12.0-ee", "counts": {}}
    docker = {"installation_id": "uuid-v4", "platform": "linux", "usage_metrics": {"c": 1}}
    assert run(Event.new(gitlab)) is not None
    assert run(Event.new(docker)) is not None
    assert drops == []


def test_design_pipeline_counts_each_drop_by_filter_and_reason() -> None:
    run, drops = pipeline(DESIGN_PIPELINE, env={"BEACON_HASH_KEY": KEY})
    assert run(Event.new({"installation_id": 5})) is None
    assert run(Event.new({"telemetry": False})) is None
    assert run(Event.new({}, context=RequestContext(dnt=True))) is None
    assert drops == ["validate:invalid", "opt_out:opted_out", "opt_out:opted_out"]


def test_pipeline_explain_names_the_dropping_filter() -> None:
    run, _ = pipeline(DESIGN_PIPELINE, env={"BEACON_HASH_KEY": KEY})
    assert run.explain(Event.new({"installation_id": 5})) == (None, "validate: invalid")


def test_drop_reasons_of_sample_dedupe_and_coerce_reach_the_pipeline_hook() -> None:
    run, drops = pipeline("""
pipeline:
  - {type: coerce, fields: {n: int}, on_error: drop_event}
  - {type: dedupe, fields: [id], window: 1h}
  - {type: sample, rate: 0}
""")
    assert run(Event.new({"id": "a", "n": "x"})) is None
    assert run(Event.new({"id": "a", "n": "1"})) is None  # kept by dedupe, sampled out
    assert run(Event.new({"id": "a", "n": "1"})) is None  # now a duplicate
    assert drops == ["coerce:coerce_failed", "sample:sampled_out", "dedupe:duplicate"]


def test_unset_hash_key_variable_falls_back_to_a_generated_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "hash.key"
    text = f"""
pipeline:
  - {{type: hash, fields: [id], key: "${{BEACON_HASH_KEY:-}}", key_file: {key_file}, length: 32}}
"""
    run, _ = pipeline(text, env={})
    event = run(Event.new({"id": "abc"}))
    stored = key_file.read_text().strip()
    assert event is not None
    assert event.data["id"] == hmac.new(stored.encode(), b"abc", hashlib.sha256).hexdigest()[:32]
    rerun, _ = pipeline(text, env={})
    again = rerun(Event.new({"id": "abc"}))
    assert again is not None and again.data == event.data


def test_every_filter_type_builds_from_yaml_and_runs_in_order() -> None:
    config = loads(f"""
pipeline:
  - {{type: validate, schema: {SCHEMA}, on_invalid: reject}}
  - {{type: opt_out, headers: true, flag: telemetry, values: [false, "false", "0", 0]}}
  - {{type: sample, rate: 1, key: installation_id}}
  - {{type: dedupe, fields: [installation_id], window: 24h, max_keys: 1000}}
  - {{type: default, fields: {{deployment_type: unknown}}}}
  - {{type: set, fields: {{schema_version: 1}}}}
  - {{type: copy, fields: {{deployment_type: kind}}}}
  - {{type: coerce, fields: {{counts.users: int}}, on_error: remove}}
  - {{type: rename, fields: {{counts.users: users}}}}
  - {{type: bucket, field: users, edges: [10, 50, 200], labels: [xs, s, m, l]}}
  - {{type: redact, patterns: [email, ipv4], custom: [{{name: tok, regex: "tok_\\\\w+"}}]}}
  - {{type: round_time, fields: [timestamp], to: 1d}}
  - {{type: hash, fields: [installation_id], key: {KEY}, length: 16}}
  - {{type: geoip}}
  - {{type: user_agent}}
  - type: keep
    fields: [installation_id, users, deployment_type, kind, schema_version, timestamp, note]
  - {{type: drop, fields: [schema_version]}}
""")
    assert set(FILTERS) <= {spec.type for spec in config.pipeline}
    run = Pipeline(config.pipeline)
    event = run(
        Event.new(
            {
                "installation_id": "i-1",
                "counts": {"users": "37"},
                "timestamp": "2024-03-05T12:34:56Z",
                "note": "mail a@b.io tok_abc",
                "hostname": "h",
            }
        )
    )
    assert event is not None
    assert event.data == {
        "installation_id": hmac.new(KEY.encode(), b"i-1", hashlib.sha256).hexdigest()[:16],
        "users": "s",
        "deployment_type": "unknown",
        "kind": "unknown",
        "timestamp": "2024-03-05T00:00:00Z",
        "note": "mail [email] [tok]",
    }


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("{type: bucket, field: n, edges: [10, 5]}", "pipeline[1].edges", "strictly increasing"),
        ("{type: bucket, field: n, edges: [1], labels: [a]}", "pipeline[1].labels", "needs 2"),
        ("{type: bucket, edges: [1]}", "pipeline[1]", "exactly one of `field` or `fields`"),
        ("{type: sample, rate: 1.5}", "pipeline[1].rate", "less than or equal to 1"),
        ("{type: hash, fields: [a], key: short}", "pipeline[1].key", "at least 16"),
        ("{type: hash, fields: [a], length: 65}", "pipeline[1].length", "less than or equal"),
        ("{type: hash, fields: [a], lenght: 8}", "pipeline[1].lenght", "valid keys: fields, key"),
        ("{type: validate, schema: missing.json}", "pipeline[1].schema", "cannot read schema"),
        ("{type: validate}", "pipeline[1].schema", "required key is missing"),
        (
            f"{{type: validate, schema: {SCHEMA}, on_invalid: warn}}",
            "pipeline[1].on_invalid",
            "'drop' or 'reject'",
        ),
        ("{type: redact, custom: [{name: x, regex: '('}]}", "pipeline[1].custom[0].regex", "bad"),
        ("{type: round_time, to: soon}", "pipeline[1].to", "not a duration"),
        ("{type: dedupe, fields: [a], window: 0s}", "pipeline[1].window", "greater than 0"),
        ("{type: drop, fields: [a..b]}", "pipeline[1].fields[0]", "not a field path"),
        ("{type: keep, fields: []}", "pipeline[1].fields", "at least 1"),
        ("{type: rename, fields: {a: a}}", "pipeline[1].fields", "renamed to itself"),
        ("{type: coerce, fields: {a: integer}}", "pipeline[1].fields.a", "'int'"),
        ("{type: opt_out, values: []}", "pipeline[1].values", "at least 1"),
        ("{type: set, fields: {a: !!binary aGk=}}", "pipeline[1].fields.a", "not a JSON value"),
    ],
)
def test_bad_filter_options_name_file_line_and_key(entry: str, key: str, message: str) -> None:
    text = f"pipeline:\n  - {{type: drop, fields: [a]}}\n  - {entry}\n"
    with pytest.raises(ConfigError) as info:
        loads(text, file="router.yaml", env={})
    error = info.value
    assert not isinstance(error, ConfigErrors), str(error)
    assert (error.file, error.line, error.key) == ("router.yaml", 3, key)
    assert message in error.message


def test_a_bad_schema_file_is_reported_with_its_path(tmp_path: Path) -> None:
    schema = tmp_path / "broken.json"
    schema.write_text('{"type": "object", "properties": {"a": {"maxLength": "ten"}}}')
    with pytest.raises(ConfigError) as info:
        loads(f"pipeline:\n  - {{type: validate, schema: {schema}}}\n", file="router.yaml")
    assert info.value.key == "pipeline[0].schema"
    assert str(schema) in info.value.message and "not a usable JSON Schema" in info.value.message
