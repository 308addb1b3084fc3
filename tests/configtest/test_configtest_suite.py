"""Tests documents are validated like the config: every error names file, line and key."""

from __future__ import annotations

import pytest

from router.config.loader import loads
from router.configtest.match import MISSING
from router.configtest.suite import parse_suite
from router.errors import ConfigError
from router.yamlsource import load_text


def suite(text: str):
    return parse_suite(
        load_text(text, "t.yaml", interpolate=False),
        load_text(text, "t.yaml", interpolate=False).data,
    )


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        suite(text)
    return str(caught.value)


def test_a_misspelt_case_key_names_file_line_and_key():
    message = error_of("cases:\n  - name: a\n    input: {}\n    expcet: {out: sent}\n")

    assert "t.yaml:4: cases[0].expcet: unknown key; valid keys: env, event, expect" in message


def test_a_case_without_input_is_an_error():
    assert "t.yaml:2: cases[0].input: required key is missing" in error_of(
        "cases:\n  - name: a\n    expect: {out: sent}\n"
    )


def test_a_bad_regular_expression_is_reported_where_it_is_written():
    message = error_of(
        "cases:\n  - name: a\n    input: {}\n    expect:\n"
        "      out: {data: {id: {matches: '(['}}}\n"
    )

    assert message.startswith(
        "t.yaml:5: cases[0].expect.out.received.data.id.matches: bad regular expression"
    )


def test_an_expected_drop_leaves_nothing_else_to_expect():
    message = error_of(
        "cases:\n  - name: a\n    input: {}\n    expect: {dropped: opt_out, out: sent}\n"
    )

    assert "cases[0].expect: an event the pipeline drops reaches no backend" in message


def test_a_skipped_backend_has_nothing_to_compare():
    message = error_of(
        "cases:\n  - name: a\n    input: {}\n    expect: {out: {skipped: true, body: []}}\n"
    )

    assert "cases[0].expect.out: a skipped backend gets nothing to compare" in message


def test_an_empty_expect_is_an_error_not_a_test_that_always_passes():
    assert "cases[0].expect: names nothing to check" in error_of(
        "cases:\n  - name: a\n    input: {}\n    expect: {}\n"
    )


def test_two_cases_with_one_name_are_an_error():
    text = "cases:\n" + "  - {name: a, input: {}, expect: {out: sent}}\n" * 2

    assert "t.yaml:3: cases[1].name: two cases are named 'a'" in error_of(text)


def test_the_short_forms_mean_what_the_long_ones_do():
    (case,) = suite(
        "- name: a\n  input: {}\n  expect:\n    a: sent\n    b: skipped\n"
        "    c: dropped\n    d: {data: {x: 1}}\n    e: {skipped: when}\n"
        "    f: {dropped: {filter: sample}}\n"
    ).cases

    b = case.backends
    assert (b["a"].outcome, b["a"].received, b["a"].body) == ("sent", MISSING, MISSING)
    assert (b["b"].outcome, b["b"].skipped) == ("skipped", None)
    assert (b["c"].outcome, b["c"].dropped.filter) == ("dropped", None)
    assert (b["d"].outcome, b["d"].received) == ("sent", {"data": {"x": 1}})
    assert (b["e"].outcome, b["e"].skipped) == ("skipped", "when")
    assert (b["f"].outcome, b["f"].dropped.filter) == ("dropped", "sample")
    assert case.dropped is None


def test_numbers_in_env_and_headers_are_read_as_text():
    parsed = suite(
        "env: {KEY: 123456789}\ncases:\n"
        "  - {name: a, input: {}, headers: {DNT: 1}, expect: {dropped: true}}\n"
    )

    assert parsed.env == {"KEY": "123456789"}
    assert parsed.cases[0].headers == {"DNT": "1"}


def test_tests_are_read_as_written_without_variable_expansion():
    (case,) = suite("- {name: a, input: {v: '${HOME}'}, expect: {out: sent}}\n").cases

    assert case.input == {"v": "${HOME}"}


def test_a_broken_tests_section_fails_the_config_check_with_its_key():
    text = (
        "backends: {out: {type: stdout}}\n"
        "tests:\n  cases:\n    - name: a\n      input: {}\n"
        "      expect: {out: {sent: 1, body: []}}\n"
    )

    with pytest.raises(ConfigError) as caught:
        loads(text, file="router.yaml", env={})

    assert "router.yaml:6: tests.cases[0].expect.out.sent: unknown key" in str(caught.value)


def test_a_config_with_a_valid_tests_section_loads():
    text = "backends: {out: {type: stdout}}\ntests: [{name: a, input: {}, expect: {out: sent}}]\n"

    assert loads(text, file="router.yaml", env={}).backends["out"].type == "stdout"
