"""Each wire format decodes to the events it carries, picked by its media type."""

from __future__ import annotations

import math

import orjson
import pytest

from router.config import ServerConfig
from router.errors import InputError
from router.ingest import Limits, decode_beacons, parse_media_type
from router.ingest.beacon import decoder_for
from router.ingest.form import decode as decode_form
from router.ingest.json_format import decode as decode_json
from router.ingest.prometheus import decode as decode_prometheus
from router.ingest.prometheus import decode_openmetrics
from router.ingest.yaml_format import decode as decode_yaml

LIMITS = Limits()


# Dispatch on the media type


@pytest.mark.parametrize(
    ("content_type", "decoder"),
    [
        (None, decode_json),
        ("", decode_json),
        ("application/json", decode_json),
        ("Application/JSON; Charset=UTF-8", decode_json),
        ("application/vnd.operately.beacon+json", decode_json),
        ("text/plain", decode_json),
        ("text/plain;charset=UTF-8", decode_json),
        ("text/plain; version=0.0.4", decode_prometheus),
        ("text/plain; version=0.0.4; charset=utf-8", decode_prometheus),
        ("text/plain;version=1.0.0;escaping=allow-utf-8", decode_prometheus),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", decode_openmetrics),
        ("application/x-www-form-urlencoded", decode_form),
        ("application/x-www-form-urlencoded; charset=UTF-8", decode_form),
        ("application/yaml", decode_yaml),
        ("application/x-yaml", decode_yaml),
        ("text/yaml", decode_yaml),
        ("text/x-yaml", decode_yaml),
    ],
)
def test_media_type_selects_the_decoder(content_type: str | None, decoder: object) -> None:
    assert decoder_for(content_type) is decoder


def test_media_type_parameters_are_parsed_with_quotes_and_case() -> None:
    assert parse_media_type('Text/Plain ; Version="0.0.4" ; CHARSET=utf-8') == (
        "text/plain",
        {"version": "0.0.4", "charset": "utf-8"},
    )
    assert parse_media_type('a/b; x="semi;colon \\"quoted\\""; y=2') == (
        "a/b",
        {"x": 'semi;colon "quoted"', "y": "2"},
    )


def test_malformed_media_type_parameters_are_skipped() -> None:
    assert parse_media_type("application/json; garbage; charset=utf-8; =x; q") == (
        "application/json",
        {"charset": "utf-8"},
    )


# JSON


def test_json_object_is_one_event() -> None:
    body = b'{"installation_id": "abc", "version": "1.0.0", "counts": {"users": 37}}'
    assert decode_beacons(body, "application/json", LIMITS) == [
        {"installation_id": "abc", "version": "1.0.0", "counts": {"users": 37}}
    ]


def test_json_array_is_one_event_per_object() -> None:
    body = b'[{"n": 1}, {"n": 2}, {"n": 3}]'
    assert decode_beacons(body, None, LIMITS) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_sendbeacon_text_body_is_read_as_json() -> None:
    assert decode_beacons(b'{"v": "2.0"}', "text/plain;charset=UTF-8", LIMITS) == [{"v": "2.0"}]


def test_json_keeps_unicode_and_large_numbers() -> None:
    body = '{"name": "Zürich ☃", "big": 18446744073709551615, "f": 1.5e300}'.encode()
    assert decode_beacons(body, None, LIMITS) == [
        {"name": "Zürich ☃", "big": 18446744073709551615, "f": 1.5e300}
    ]


# Form-encoded (WordPress, PHP)


def test_form_fields_become_one_event_of_strings() -> None:
    body = b"wp_version=5.8.1&users=5&plugins=wordpress-seo%2Cjetpack&site+name=My+Blog"
    assert decode_beacons(body, "application/x-www-form-urlencoded", LIMITS) == [
        {
            "wp_version": "5.8.1",
            "users": "5",
            "plugins": "wordpress-seo,jetpack",
            "site name": "My Blog",
        }
    ]


def test_form_brackets_nest_into_objects_and_arrays_as_php_does() -> None:
    body = (
        b"counts[users]=5&counts[posts]=100&plugins[]=jetpack&plugins[]=akismet"
        b"&themes[][name]=twentytwenty&themes[][name]=astra&a%5Bb%5D%5Bc%5D=deep"
    )
    assert decode_form(body, LIMITS) == [
        {
            "counts": {"users": "5", "posts": "100"},
            "plugins": ["jetpack", "akismet"],
            "themes": [{"name": "twentytwenty"}, {"name": "astra"}],
            "a": {"b": {"c": "deep"}},
        }
    ]


def test_form_repeated_plain_field_keeps_the_last_value() -> None:
    assert decode_form(b"locale=en_US&locale=de_DE", LIMITS) == [{"locale": "de_DE"}]


def test_form_names_with_unbalanced_brackets_are_kept_literally() -> None:
    assert decode_form(b"a]b=1&c[d=2&[e]=3&f=", LIMITS) == [
        {"a]b": "1", "c[d": "2", "[e]": "3", "f": ""}
    ]


# YAML


def test_yaml_mapping_is_one_event_and_a_list_is_many() -> None:
    assert decode_beacons(b"version: 1.0.0\ncounts: {users: 37}\n", "application/yaml", LIMITS) == [
        {"version": "1.0.0", "counts": {"users": 37}}
    ]
    assert decode_beacons(b"- a: 1\n- a: 2\n", "text/yaml", LIMITS) == [{"a": 1}, {"a": 2}]


def test_yaml_reads_the_core_schema_so_strings_stay_strings() -> None:
    body = b"""\
country: NO
answer: yes
at: 12:30
released: 2024-01-01T12:00:00Z
mode: 0755
octal: 0o17
hex: 0x1F
ratio: 1e3
flags: [true, False, null, ~]
1: one
true: yes
"""
    assert decode_yaml(body, LIMITS) == [
        {
            "country": "NO",
            "answer": "yes",
            "at": "12:30",
            "released": "2024-01-01T12:00:00Z",
            "mode": 755,
            "octal": 15,
            "hex": 31,
            "ratio": 1000.0,
            "flags": [True, False, None, None],
            "1": "one",
            "true": "yes",
        }
    ]


def test_yaml_integers_past_64_bits_become_floats_as_in_json() -> None:
    [event] = decode_yaml(b"big: 123456789012345678901234567890", LIMITS)
    assert event == {"big": 1.2345678901234568e29}


def test_yaml_merge_keys_and_aliases_give_independent_copies() -> None:
    body = b"base: &b {os: linux, arch: x86_64}\nhost:\n  <<: *b\n  arch: arm64\ncopy: *b\n"
    [event] = decode_yaml(body, LIMITS)
    assert event == {
        "base": {"os": "linux", "arch": "x86_64"},
        "host": {"os": "linux", "arch": "arm64"},
        "copy": {"os": "linux", "arch": "x86_64"},
    }
    event["copy"]["os"] = "changed by a filter"
    assert event["base"]["os"] == "linux"


# Prometheus and OpenMetrics

EXPOSITION = b"""\
# HELP prometheus_build_info Build information
# TYPE prometheus_build_info gauge
prometheus_build_info{version="2.45.0",branch="HEAD"} 1
# TYPE go_goroutines gauge
go_goroutines 42
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 3
http_request_duration_seconds_bucket{le="+Inf"} 5
http_request_duration_seconds_sum 1.25
http_request_duration_seconds_count 5
process_start_time_seconds 1.7e+09 1700000000000
up NaN
"""


def test_prometheus_text_is_one_structured_event() -> None:
    [event] = decode_beacons(EXPOSITION, "text/plain; version=0.0.4", LIMITS)
    assert event["format"] == "prometheus"
    metrics = event["metrics"]
    assert metrics["prometheus_build_info"] == [
        {"labels": {"version": "2.45.0", "branch": "HEAD"}, "value": 1}
    ]
    assert metrics["go_goroutines"] == 42
    assert metrics["http_request_duration_seconds_bucket"] == [
        {"labels": {"le": "0.1"}, "value": 3},
        {"labels": {"le": "+Inf"}, "value": 5},
    ]
    assert metrics["http_request_duration_seconds_sum"] == 1.25
    assert metrics["http_request_duration_seconds_count"] == 5
    assert metrics["process_start_time_seconds"] == 1.7e9  # the sample timestamp is dropped
    assert math.isnan(metrics["up"])


def test_unlabelled_name_with_several_samples_is_a_list() -> None:
    [event] = decode_prometheus(b"x 1\nx 2\n", LIMITS)
    assert event["metrics"]["x"] == [{"labels": {}, "value": 1}, {"labels": {}, "value": 2}]


@pytest.mark.parametrize("content_type", ["text/plain; version=0.0.4",
                                          "application/openmetrics-text; version=1.0.0"])
def test_a_sample_integer_past_64_bits_is_a_float_and_one_past_floats_a_400(content_type):
    """Found by bench/fuzz (fuzz_prometheus): a 44-digit sample was a 500 at the spool."""
    eof = b"# EOF\n" if "openmetrics" in content_type else b""
    body = b"d 2\neded 29999999999999999999999999999999999999999999\n" + eof
    [event] = decode_beacons(body, content_type, LIMITS)
    assert event["metrics"] == {"d": 2, "eded": float(29999999999999999999999999999999999999999999)}
    orjson.dumps(event)  # what the spool does with it
    with pytest.raises(InputError):
        decode_beacons(b"x " + b"9" * 400 + b"\n" + eof, content_type, LIMITS)


def test_openmetrics_text_is_read_with_its_own_parser() -> None:
    body = b'# TYPE requests counter\nrequests_total{path="/"} 7\nup 1\n# EOF\n'
    [event] = decode_beacons(body, "application/openmetrics-text", LIMITS)
    assert event == {
        "format": "prometheus",
        "metrics": {"requests_total": [{"labels": {"path": "/"}, "value": 7}], "up": 1},
    }


def test_limits_are_read_from_the_server_section() -> None:
    server = ServerConfig(max_body="2MiB", max_decompressed="16MiB", max_events=5, max_depth=10)
    assert Limits.from_server(server) == Limits(
        max_body=2 * 1024 * 1024, max_decompressed=16 * 1024 * 1024, max_events=5, max_depth=10
    )
