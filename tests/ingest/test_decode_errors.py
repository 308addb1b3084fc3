"""Every malformed body is refused with the right InputError and a detail that says why."""

from __future__ import annotations

import pytest

from router.errors import BadRequest, InputError, UnsupportedMedia
from router.ingest import Limits, decode_beacons

JSON = "application/json"
YAML = "application/yaml"
FORM = "application/x-www-form-urlencoded"
PROM = "text/plain; version=0.0.4"

BILLION_LAUGHS = b"""\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""

# (id, body, content type, error class, the detail, or a part of it after "...")
# fmt: off
CASES: list[tuple[str, bytes, str | None, type[InputError], str]] = [
    ("bad-json", b'{"a": 1,, }', JSON, BadRequest,
     "body is not valid JSON: unexpected character, expected a string key at line 1 column 9"),
    ("truncated-json", b'{"version": "1.0', JSON, BadRequest,
     "body is not valid JSON: unexpected end of data at line 1 column 17"),
    ("trailing-garbage", b'{"a": 1} {"b": 2}', JSON, BadRequest,
     "body is not valid JSON: unexpected content after document at line 1 column 10"),
    ("json-string", b'"hello"', JSON, BadRequest,
     "body must be a JSON object or an array of objects, got a string"),
    ("json-number", b"42", JSON, BadRequest,
     "body must be a JSON object or an array of objects, got a number"),
    ("json-null", b"null", None, BadRequest,
     "body must be a JSON object or an array of objects, got null"),
    ("array-of-numbers", b"[1, 2]", JSON, BadRequest,
     "item 0 of the array is a number, expected an object"),
    ("object-then-array", b'[{"a": 1}, {"b": 2}, ["c"]]', JSON, BadRequest,
     "item 2 of the array is an array, expected an object"),
    ("too-deep", b'{"a":' * 33 + b"1" + b"}" * 33, JSON, BadRequest,
     "body is nested more than 32 levels deep"),
    ("too-deep-for-orjson", b"[" * 5000 + b"]" * 5000, JSON, BadRequest,
     "body is nested more than 32 levels deep"),
    ("too-many-events", b"[" + b",".join([b"{}"] * 1001) + b"]", JSON, BadRequest,
     "1001 events, at most 1000 per request"),
    ("empty", b"", JSON, BadRequest, "body is empty; send a JSON object or an array of objects"),
    ("whitespace", b" \r\n\t", None, BadRequest,
     "body is empty; send a JSON object or an array of objects"),
    ("empty-array", b"[]", JSON, BadRequest, "body is an empty array; send at least one event"),
    ("invalid-utf8", b'{"a": "\xff"}', JSON, BadRequest,
     "body is not valid JSON: str is not valid UTF-8: surrogates not allowed at line 1 column 1"),
    ("sendbeacon-not-json", b"hello world", "text/plain;charset=UTF-8", BadRequest,
     "...body is not valid JSON"),
    ("unknown-type", b"<beacon/>", "application/xml", UnsupportedMedia,
     "...content type 'application/xml' is not supported; use one of: application/json"),
    ("multipart", b"--x--", "multipart/form-data; boundary=x", UnsupportedMedia,
     "...is not supported"),
    ("not-a-media-type", b"{}", "json", UnsupportedMedia, "...content type 'json'"),
    ("utf16-charset", b"{}", "application/json; charset=utf-16", UnsupportedMedia,
     "charset 'utf-16' is not supported; send UTF-8"),
    ("yaml-alias-bomb", BILLION_LAUGHS, YAML, BadRequest,
     "YAML aliases expand to more than 10000 nodes"),
    ("yaml-too-many-aliases", b"a: &a 1\nb: [" + b", ".join([b"*a"] * 101) + b"]", YAML,
     BadRequest, "YAML body uses more than 100 aliases"),
    ("yaml-recursive-alias", b"a: &a [1, *a]", YAML, BadRequest,
     "YAML alias *a is not defined before it is used, or refers to a collection that contains it"),
    ("yaml-python-tag", b'a: !!python/object/apply:os.system ["echo hi"]', YAML, BadRequest,
     "body is not valid YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'; only plain values, lists and "
     "mappings are accepted at line 1 column 4"),
    ("yaml-python-name", b"!!python/name:os.system", YAML, BadRequest,
     "...could not determine a constructor for the tag 'tag:yaml.org,2002:python/name"),
    ("yaml-binary", b"a: !!binary aGVsbG8=", "text/yaml", BadRequest,
     "...could not determine a constructor for the tag 'tag:yaml.org,2002:binary'"),
    ("yaml-syntax", b"a: b: c", YAML, BadRequest,
     "body is not valid YAML: mapping values are not allowed in this context at line 1 column 5"),
    ("yaml-two-documents", b"a: 1\n---\nb: 2\n", YAML, BadRequest,
     "body is not valid YAML: expected a single document in the stream, but found another "
     "document at line 2 column 1"),
    ("yaml-scalar", b"just text", YAML, BadRequest,
     "body must be a YAML object or an array of objects, got a string"),
    ("yaml-only-comments", b"# nothing\n", YAML, BadRequest,
     "body is an empty YAML document; send a mapping or a list of mappings"),
    ("yaml-too-deep", b"a: " + b"[" * 40 + b"]" * 40, YAML, BadRequest,
     "body is nested more than 32 levels deep"),
    ("yaml-invalid-utf8", b"a: \xff\xfe\xfd", YAML, BadRequest, "...body is not valid YAML"),
    ("bad-prometheus", b"go_goroutines{job=unquoted} 1\n", PROM, BadRequest,
     "body is not valid Prometheus text: Invalid labels: job=unquoted"),
    ("prometheus-no-value", b"go_goroutines{}\n", PROM, BadRequest,
     "...body is not valid Prometheus text"),
    ("prometheus-only-comments", b"# HELP x y\n", PROM, BadRequest,
     "body has no metric samples; send Prometheus text with at least one sample"),
    ("openmetrics-without-eof", b"x 1\n", "application/openmetrics-text", BadRequest,
     "...body is not valid OpenMetrics text"),
    ("form-empty-name", b"=1&a=2", FORM, BadRequest, "a form field has an empty name"),
    ("form-conflict", b"a=1&a[b]=2", FORM, BadRequest,
     "form field 'a[b]' conflicts with an earlier field: a name holds a value, an object or "
     "an array, not two of them"),
    ("form-too-deep", b"a" + b"[x]" * 32 + b"=1", FORM, BadRequest,
     "body is nested more than 32 levels deep"),
    ("form-too-many-fields", b"&".join([b"a=1"] * 1001), FORM, BadRequest,
     "form body has more than 1000 fields"),
    ("form-invalid-utf8", b"a=%ff", FORM, BadRequest,
     "a percent-encoded form field is not valid UTF-8: invalid start byte"),
    ("form-no-fields", b"&&", FORM, BadRequest, "form body has no fields; send key=value fields"),
]
# fmt: on


@pytest.mark.parametrize(
    ("body", "content_type", "error", "detail"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_malformed_body_raises_the_right_input_error(
    body: bytes, content_type: str | None, error: type[InputError], detail: str
) -> None:
    with pytest.raises(InputError) as caught:
        decode_beacons(body, content_type, Limits())
    assert type(caught.value) is error
    if detail.startswith("..."):
        assert detail[3:] in caught.value.detail
    else:
        assert caught.value.detail == detail


def test_depth_limit_is_inclusive() -> None:
    exactly_32 = b'{"a":' * 31 + b"[1]" + b"}" * 31
    assert decode_beacons(exactly_32, None, Limits())


def test_event_limit_is_inclusive() -> None:
    assert len(decode_beacons(b"[{}, {}, {}]", None, Limits(max_events=3))) == 3
    with pytest.raises(BadRequest, match=r"^4 events, at most 3 per request$"):
        decode_beacons(b"[{}, {}, {}, {}]", None, Limits(max_events=3))


@pytest.mark.parametrize("content_type", [JSON, YAML])
def test_depth_is_checked_even_when_brackets_are_in_strings(content_type: str) -> None:
    # 40 "[" inside a string push the bracket count over the limit; the real depth is 2.
    body = b'{"note": "' + b"[" * 40 + b'", "x": {"y": 1}}'
    assert decode_beacons(body, content_type, Limits()) == [{"note": "[" * 40, "x": {"y": 1}}]


def test_yaml_alias_expansion_counts_towards_depth() -> None:
    nested = b"[" * 20 + b"1" + b"]" * 20
    body = b"a: &deep " + nested + b"\nb: " + b"[" * 20 + b"*deep" + b"]" * 20
    with pytest.raises(BadRequest, match="nested more than 32 levels deep"):
        decode_beacons(body, YAML, Limits())
