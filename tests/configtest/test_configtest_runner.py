"""Running config tests: outcomes per backend, the environment, headers, and stable output."""

from __future__ import annotations

import textwrap

import pytest

from router.backends import Backend
from router.configtest.command import load_suites
from router.configtest.runner import build_event, run
from router.errors import ConfigError

CONFIG = """\
pipeline:
  - {type: opt_out, flag: telemetry}
  - {type: hash, fields: [installation_id], key: "${HASH_KEY:-}"}
  - {type: bucket, fields: [counts.users], edges: [10, 50]}
backends:
  out: {type: stdout}
  hook:
    type: webhook
    url: "${HOOK_URL:-http://127.0.0.1:9/hook}"
    when: {field: version, matches: '^2\\.'}
  dormant: {type: stdout, enabled: "${OFF_ON:+true}"}
  sampled: {type: stdout, filters: [{type: sample, rate: 0}]}
"""
ENV = "env: {HASH_KEY: a-test-key-long-enough-for-hmac}\n"


class TwoRequests(Backend):
    """A backend that renders two requests per batch."""

    type = "two_requests"

    def render(self, batch):
        from router.backends import Request

        return [
            Request("POST", "http://x/1", {}, {"n": 1}),
            Request("POST", "http://x/2", {}, {"n": 2}),
        ]


class Broken(Backend):
    """A backend whose render fails."""

    type = "broken"

    def render(self, batch):
        raise RuntimeError("render exploded")


@pytest.fixture
def outcomes(tmp_path, monkeypatch):
    """``outcomes(cases_yaml, config=CONFIG)`` → {case name: Outcome}, with its report text."""
    monkeypatch.chdir(tmp_path)

    def run_cases(cases: str, config: str = CONFIG, env: str = ENV):
        (tmp_path / "router.yaml").write_text(config)
        (tmp_path / "router.tests.yaml").write_text(
            env + "cases:\n" + textwrap.indent(textwrap.dedent(cases), "  ")
        )
        report = run("router.yaml", load_suites("router.yaml"))
        return {o.case.name: o for o in report.outcomes}, report.render()

    return run_cases


def test_a_beacon_that_meets_every_expectation_passes(outcomes):
    results, text = outcomes("""
        - name: docker beacon
          input: {installation_id: abc, version: 2.1.0, counts: {users: 37}}
          expect:
            pipeline: {data: {counts: {users: 11-50}}}
            out: {data: {installation_id: {matches: '^[0-9a-f]{64}$'}}}
            hook:
              body: {events: [{data: {version: 2.1.0}}]}
            dormant: {skipped: disabled}
            sampled: {dropped: {filter: sample, reason: sampled_out}}
    """)

    assert results["docker beacon"].passed, text
    assert text.startswith("ok    docker beacon\n")
    assert text.endswith("router.yaml: 1 tests, 1 passed, 0 failed\n")


def test_a_wrong_value_fails_with_its_path_expected_and_actual(outcomes):
    results, text = outcomes("""
        - name: wrong bucket
          input: {installation_id: abc, counts: {users: 37}}
          expect: {out: {data: {counts: {users: 0-10}}}}
    """)

    assert not results["wrong bucket"].passed
    assert "FAIL  wrong bucket  (router.tests.yaml:4)" in text
    assert "out: received.data.counts.users" in text
    assert 'expected: "0-10"' in text and 'actual:   "11-50"' in text


def test_skipped_by_when_and_skipped_because_disabled_are_told_apart(outcomes):
    results, text = outcomes("""
        - name: when right
          input: {version: 1.0.0}
          expect: {hook: {skipped: when}, dormant: {skipped: disabled}}
        - name: when wrong
          input: {version: 1.0.0}
          expect: {hook: {skipped: disabled}}
        - name: skipped for either reason
          input: {version: 1.0.0}
          expect: {hook: skipped, dormant: skipped}
    """)

    assert results["when right"].passed, text
    assert results["skipped for either reason"].passed, text
    assert not results["when wrong"].passed
    assert "actual:   skipped (its when: condition does not match)" in text


def test_the_process_environment_never_reaches_the_config(outcomes, monkeypatch):
    monkeypatch.setenv("OFF_ON", "1")
    monkeypatch.setenv("HOOK_URL", "http://elsewhere.example/hook")

    results, text = outcomes("""
        - name: dormant stays off
          input: {version: 2.0.0}
          expect:
            dormant: {skipped: disabled}
            hook: {requests: [{url: http://127.0.0.1:9/hook}]}
    """)

    assert results["dormant stays off"].passed, text


def test_a_case_env_adds_to_the_suite_env_and_null_unsets(outcomes):
    results, text = outcomes(
        """
        - name: enabled by the case
          env: {OFF_ON: "1"}
          input: {}
          expect: {dormant: sent}
        - name: no hash key
          env: {HASH_KEY: null}
          input: {installation_id: abc}
          expect: {out: {data: {installation_id: {matches: '^[0-9a-f]{64}$'}}}}
    """,
        env="env: {HASH_KEY: a-test-key-long-enough-for-hmac, OFF_ON: ''}\n",
    )

    assert results["enabled by the case"].passed, text
    # Without HASH_KEY the hash filter reads (or creates) ./data/hash.key, as serve would.
    assert results["no hash key"].passed, text


def test_request_headers_reach_the_pipeline_as_at_ingest(outcomes):
    results, text = outcomes("""
        - name: dnt
          input: {installation_id: abc}
          headers: {dnt: "1"}
          expect: {dropped: {filter: opt_out, reason: opted_out}}
        - name: gpc
          input: {installation_id: abc}
          headers: {Sec-GPC: 1}
          expect: {dropped: opt_out}
        - name: no headers
          input: {installation_id: abc}
          expect: {dropped: false}
    """)

    assert all(o.passed for o in results.values()), text


def test_an_unexpected_drop_and_a_missing_drop_both_fail(outcomes):
    results, text = outcomes("""
        - name: dropped unexpectedly
          input: {telemetry: false}
          expect: {out: sent}
        - name: not dropped
          input: {}
          expect: {dropped: {filter: opt_out}}
        - name: dropped for another reason
          input: {telemetry: false}
          expect: {dropped: {filter: opt_out, reason: invalid}}
    """)

    assert not any(o.passed for o in results.values())
    assert "expected: passed\n          actual:   dropped by opt_out (opted_out)" in text
    assert "expected: dropped by opt_out\n          actual:   passed" in text
    assert "expected: dropped by opt_out (invalid)" in text


def test_a_backend_expected_to_send_but_dropped_by_its_filters_fails(outcomes):
    results, text = outcomes("""
        - name: sampled
          input: {}
          expect: {sampled: sent}
    """)

    assert not results["sampled"].passed
    assert "actual:   dropped by sample (sampled_out)" in text


def test_body_needs_a_single_request_and_requests_checks_each(outcomes):
    config = "backends: {two: {type: 'test_configtest_runner:TwoRequests'}}\n"
    results, text = outcomes(
        """
        - name: body
          input: {}
          expect: {two: {body: {n: 1}}}
        - name: requests
          input: {}
          expect: {two: {requests: [{body: {n: 1}}, {url: http://x/2, body: {n: 2}}]}}
    """,
        config=config,
    )

    assert not results["body"].passed
    assert "2 requests: use `requests:` to check each" in text
    assert results["requests"].passed, text


def test_a_failing_render_fails_its_case_and_the_others_still_run(outcomes):
    config = (
        "backends:\n  bad: {type: 'test_configtest_runner:Broken', when: {field: x, "
        "exists: true}}\n  out: {type: stdout}\n"
    )
    results, text = outcomes(
        """
        - name: breaks
          input: {x: 1}
          expect: {out: sent}
        - name: fine
          input: {}
          expect: {out: sent}
    """,
        config=config,
    )

    assert results["breaks"].error == (
        "the config failed on this input: RuntimeError: render exploded"
    )
    assert results["fine"].passed, text


def test_expecting_an_unknown_backend_is_a_config_error(outcomes):
    with pytest.raises(
        ConfigError,
        match=r"expect names no backend of router.yaml: outt; "
        r"its backends: out, hook, dormant, sampled",
    ):
        outcomes("- {name: typo, input: {}, expect: {outt: sent}}\n")


def test_a_config_that_does_not_load_under_a_case_env_is_a_config_error(outcomes):
    config = "backends:\n  out: {type: webhook, url: '${URL:?set URL}'}\n"
    with pytest.raises(ConfigError, match=r"with the env of test 'a' \(router.tests.yaml:3\)"):
        outcomes("- {name: a, input: {}, expect: {out: sent}}\n", config=config)


def test_events_are_stable_from_run_to_run(outcomes):
    results, _ = outcomes(
        "- {name: a, input: {v: 1}, expect: {out: sent}}\n"
        "- {name: b, input: {uuid: 0b7c6a4e-3f1d-4c55-9a0e-5f2b8d7c1e90}, "
        "expect: {out: sent}}\n"
    )

    first, again = build_event(results["a"].case), build_event(results["a"].case)
    assert (first.uuid, first.received_at) == (again.uuid, again.received_at)
    assert first.received_at == "2026-01-01T12:00:00.000Z"
    assert build_event(results["b"].case).uuid == "0b7c6a4e-3f1d-4c55-9a0e-5f2b8d7c1e90"


def test_a_case_does_not_see_the_changes_a_previous_case_made_to_its_input(outcomes):
    results, text = outcomes("""
        - name: first
          input: &beacon {installation_id: abc, counts: {users: 37}}
          expect: {out: {data: {counts: {users: 11-50}}}}
        - name: second
          input: *beacon
          expect: {out: {data: {counts: {users: 11-50}}}}
    """)

    assert all(o.passed for o in results.values()), text
