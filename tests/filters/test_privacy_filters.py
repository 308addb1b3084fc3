"""hash (incl. its key file), bucket, redact, round_time — called directly on events."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from router.errors import ConfigError
from router.event import Event
from router.filters.privacy import Bucket, BucketOptions, Hash, HashOptions
from router.filters.redact import Redact, RedactOptions
from router.filters.round_time import RoundTime, RoundTimeOptions

KEY = "k" * 32


def reference_hmac(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


# --- hash ---


def test_hash_replaces_values_with_the_keyed_hmac_sha256_hex() -> None:
    hash_ = Hash(HashOptions(fields=["installation_id", "platform.os"], key=KEY))
    event = hash_(Event.new({"installation_id": "abc", "platform": {"os": "linux"}}))
    assert event is not None
    assert event.data["installation_id"] == reference_hmac(KEY, "abc")
    assert event.data["platform"]["os"] == reference_hmac(KEY, "linux")


def test_hash_truncates_to_length_hex_characters() -> None:
    event = Hash(HashOptions(fields=["id"], key=KEY, length=32))(Event.new({"id": "abc"}))
    assert event is not None and event.data["id"] == reference_hmac(KEY, "abc")[:32]


def test_hash_uses_the_canonical_json_text_of_non_strings_and_leaves_null() -> None:
    hash_ = Hash(HashOptions(fields=["n", "flag", "obj", "none", "missing"], key=KEY))
    event = hash_(Event.new({"n": 37, "flag": True, "obj": {"b": 1, "a": [2]}, "none": None}))
    assert event is not None
    assert event.data["n"] == reference_hmac(KEY, "37")
    assert event.data["flag"] == reference_hmac(KEY, "true")
    assert event.data["obj"] == reference_hmac(KEY, '{"a":[2],"b":1}')
    assert event.data["none"] is None
    assert "missing" not in event.data


def test_hash_key_is_never_shown_by_repr_or_str() -> None:
    options = HashOptions(fields=["id"], key=KEY)
    assert KEY not in repr(options) and KEY not in str(options)


@pytest.mark.parametrize("key", ["short", "123456789012345"])
def test_hash_refuses_keys_under_16_characters(key: str) -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        HashOptions(fields=["id"], key=key)


def test_hash_without_key_generates_a_private_key_file_once_and_reuses_it(tmp_path: Path) -> None:
    key_file = tmp_path / "nested" / "dir" / "hash.key"
    options = HashOptions(fields=["id"], key="", key_file=str(key_file))  # "${UNSET_VAR}"
    with capture_logs() as logs:
        first = Hash(options)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = key_file.read_text().strip()
    assert len(stored) == 64 and int(stored, 16) >= 0
    assert [entry["event"] for entry in logs] == ["hash_key_generated"]
    assert logs[0]["log_level"] == "warning" and logs[0]["key_file"] == str(key_file)
    assert stored not in repr(logs)
    assert os.listdir(key_file.parent) == ["hash.key"]  # no temporary file left behind

    with capture_logs() as logs:
        second = Hash(options)  # a restart
    assert logs == []
    assert key_file.read_text().strip() == stored
    assert first.digest("abc") == second.digest("abc") == reference_hmac(stored, "abc")


def test_hash_key_file_content_works_as_the_key_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "hash.key"
    generated = Hash(HashOptions(fields=["id"], key_file=str(key_file)))
    explicit = Hash(HashOptions(fields=["id"], key=key_file.read_text().strip()))
    assert generated.digest("abc") == explicit.digest("abc")


def test_hash_key_file_defaults_to_data_hash_key_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Hash(HashOptions(fields=["id"]))
    assert (tmp_path / "data" / "hash.key").is_file()


def test_hash_key_file_that_is_too_short_is_a_config_error(tmp_path: Path) -> None:
    key_file = tmp_path / "hash.key"
    key_file.write_text("abc\n")
    with pytest.raises(ConfigError, match="under 16 characters") as info:
        Hash(HashOptions(fields=["id"], key_file=str(key_file)))
    assert info.value.file == str(key_file)


def test_hash_key_file_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the hash key file"):
        Hash(HashOptions(fields=["id"], key_file=str(blocker / "hash.key")))


def test_hash_warns_when_the_key_file_is_readable_by_others(tmp_path: Path) -> None:
    key_file = tmp_path / "hash.key"
    key_file.write_text("f" * 64 + "\n")
    key_file.chmod(0o644)
    with capture_logs() as logs:
        Hash(HashOptions(fields=["id"], key_file=str(key_file)))
    assert [entry["event"] for entry in logs] == ["hash_key_file_readable_by_others"]


# --- bucket ---


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0, "0-10"),
        (10, "0-10"),
        (11, "11-50"),
        (37, "11-50"),
        (50, "11-50"),
        (51, "51-200"),
        (200, "51-200"),
        (201, "201+"),
        (10**30, "201+"),
        (-1, "<0"),
        ("37", "11-50"),
        (" 201 ", "201+"),
        ("12.5", "11-50"),
        (10.5, "11-50"),  # integer labels describe whole numbers; upper bounds are inclusive
    ],
)
def test_bucket_labels_with_integer_edges(value: Any, label: str) -> None:
    bucket = Bucket(BucketOptions(field="counts.users", edges=[10, 50, 200]))
    event = bucket(Event.new({"counts": {"users": value}}))
    assert event is not None and event.data["counts"]["users"] == label


@pytest.mark.parametrize("value", ["many", True, None, [3], {"n": 3}, float("nan"), "1e999", ""])
def test_bucket_leaves_non_numeric_values_untouched(value: Any) -> None:
    event = Bucket(BucketOptions(field="n", edges=[10]))(Event.new({"n": value}))
    assert event is not None and event.data["n"] is value


def test_bucket_single_value_buckets_are_labelled_by_the_value() -> None:
    bucket = Bucket(BucketOptions(field="n", edges=[0, 1, 10]))
    labels = [bucket.label(v) for v in (-3, 0, 1, 2, 10, 11)]
    assert labels == ["<0", "0", "1", "2-10", "2-10", "11+"]


def test_bucket_float_edges_use_lower_exclusive_ranges() -> None:
    bucket = Bucket(BucketOptions(field="n", edges=[0.5, 1.5]))
    assert [bucket.label(v) for v in (-0.1, 0, 0.5, 0.6, 1.5, 1.6)] == [
        "<0",
        "0-0.5",
        "0-0.5",
        "0.5-1.5",
        "0.5-1.5",
        ">1.5",
    ]


def test_bucket_negative_first_edge_has_no_separate_below_zero_label() -> None:
    bucket = Bucket(BucketOptions(field="n", edges=[-10, 0, 10]))
    assert [bucket.label(v) for v in (-50, -10, -9, 0, 5, 11)] == [
        "<=-10",
        "<=-10",
        "-9-0",
        "-9-0",
        "1-10",
        "11+",
    ]


def test_bucket_custom_labels_cover_every_value_including_negatives() -> None:
    bucket = Bucket(BucketOptions(field="n", edges=[10, 50], labels=["small", "medium", "large"]))
    assert [bucket.label(v) for v in (-5, 10, 11, 50, 51)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]


def test_bucket_target_writes_the_label_elsewhere_and_keeps_the_value() -> None:
    bucket = Bucket(BucketOptions(field="counts.users", edges=[10, 50], target="user_range"))
    event = bucket(Event.new({"counts": {"users": 37}}))
    assert event is not None and event.data == {"counts": {"users": 37}, "user_range": "11-50"}


def test_bucket_fields_buckets_several_paths_with_the_same_edges() -> None:
    bucket = Bucket(BucketOptions(fields=["counts.users", "counts.projects"], edges=[10]))
    event = bucket(Event.new({"counts": {"users": 37, "projects": 2}}))
    assert event is not None and event.data == {"counts": {"users": "11+", "projects": "0-10"}}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"field": "n", "edges": [10, 10]}, "strictly increasing"),
        ({"field": "n", "edges": [10, 5]}, "strictly increasing"),
        ({"field": "n", "edges": []}, "at least 1"),
        ({"field": "n", "edges": ["10"]}, "not a finite number"),
        ({"field": "n", "edges": [float("inf")]}, "not a finite number"),
        ({"field": "n", "edges": [1, 2], "labels": ["a", "b"]}, "needs 3 labels"),
        ({"edges": [1]}, "exactly one of `field` or `fields`"),
        ({"field": "a", "fields": ["b"], "edges": [1]}, "exactly one of `field` or `fields`"),
        ({"fields": ["a", "b"], "edges": [1], "target": "t"}, "needs a single `field`"),
    ],
)
def test_bucket_options_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BucketOptions.model_validate(options)


# --- redact ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("contact bob.smith+ops@example.co.uk today", "contact [email] today"),
        ("from 192.168.1.20:8080", "from [ip]:8080"),
        ("v6 2001:db8::1 and ::1", "v6 [ip] and [ip]"),
        ("[2001:0db8:0000:0000:0000:ff00:0042:8329]:443", "[[ip]]:443"),
        ("mapped ::ffff:10.0.0.1", "mapped [ip]"),
        ("link fe80::1ff:fe23:4567:890a", "link [ip]"),
        ("see https://user:pw@example.com/a?b=1.", "see [url]."),
        ("(http://10.0.0.1/x)", "([url])"),
    ],
)
def test_redact_replaces_builtin_patterns(text: str, expected: str) -> None:
    event = Redact(RedactOptions())(Event.new({"note": text}))
    assert event is not None and event.data["note"] == expected


@pytest.mark.parametrize(
    "text",
    [
        "20.10.7",
        "1.2.3.4.5",
        "12:00:00",
        "2024-01-01T12:00:00Z",
        "aa:bb:cc:dd:ee:ff",
        "std::vector",
        "Elixir.Foo::Bar",
        "999.1.1.1",
        "x86_64",
    ],
)
def test_redact_leaves_lookalikes_alone(text: str) -> None:
    event = Redact(RedactOptions())(Event.new({"note": text}))
    assert event is not None and event.data["note"] == text


def test_redact_walks_every_string_by_default_but_not_keys_or_other_types() -> None:
    data = {
        "a@b.io": 1,
        "admin": "root@example.com",
        "nested": {"hosts": ["10.0.0.1", 5, None, {"url": "https://x.io"}]},
    }
    event = Redact(RedactOptions())(Event.new(data))
    assert event is not None
    assert event.data == {
        "a@b.io": 1,
        "admin": "[email]",
        "nested": {"hosts": ["[ip]", 5, None, {"url": "[url]"}]},
    }


def test_redact_with_fields_touches_only_those_paths() -> None:
    redact = Redact(RedactOptions(fields=["notes", "list.0"], patterns=["email"]))
    event = redact(Event.new({"notes": "a@b.io", "other": "c@d.io", "list": ["e@f.io", "g@h.io"]}))
    assert event is not None
    assert event.data == {"notes": "[email]", "other": "c@d.io", "list": ["[email]", "g@h.io"]}


def test_redact_custom_patterns_are_named_in_the_replacement() -> None:
    options = RedactOptions(
        patterns=["email"],
        custom=[
            {"name": "token", "regex": r"tok_[A-Za-z0-9]{8,}"},
            {"name": "phone", "regex": r"\+\d{6,}"},
        ],  # type: ignore[list-item]
    )
    event = Redact(options)(Event.new({"s": "tok_ABCDEF1234 +4915112345 x@y.io 10.0.0.1"}))
    assert event is not None and event.data["s"] == "[token] [phone] [email] 10.0.0.1"


def test_redact_custom_pattern_with_its_own_groups_still_gets_its_name() -> None:
    options = RedactOptions(patterns=[], custom=[{"name": "key", "regex": r"(?P<k>sk)-(\d+)"}])  # type: ignore[list-item]
    event = Redact(options)(Event.new({"s": "use sk-123 now"}))
    assert event is not None and event.data["s"] == "use [key] now"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"custom": [{"name": "x", "regex": "("}]}, "bad regular expression"),
        ({"custom": [{"name": "x", "regex": "a*"}]}, "matches the empty string"),
        ({"custom": [{"name": "bad name!", "regex": "a"}]}, "should match pattern"),
        ({"patterns": [], "custom": []}, "at least one"),
        ({"patterns": ["phone"]}, "Input should be"),
    ],
)
def test_redact_options_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedactOptions.model_validate(options)


# --- round_time ---


@pytest.mark.parametrize(
    ("to", "value", "expected"),
    [
        ("1h", "2024-03-05T12:34:56Z", "2024-03-05T12:00:00Z"),
        ("1h", "2024-03-05T12:34:56.789+02:00", "2024-03-05T10:00:00Z"),
        ("1h", "2024-03-05 12:34:56", "2024-03-05T12:00:00Z"),  # no offset: read as UTC
        ("1d", "2024-03-05T23:59:59Z", "2024-03-05T00:00:00Z"),
        ("1m", "2024-03-05T12:34:56Z", "2024-03-05T12:34:00Z"),
        ("1h", 1_700_000_123, "2023-11-14T22:00:00Z"),  # epoch seconds
        ("1h", 1_700_000_123_456, "2023-11-14T22:00:00Z"),  # epoch milliseconds
        ("1h", "1700000123", "2023-11-14T22:00:00Z"),
        ("1d", 1_700_000_123.9, "2023-11-14T00:00:00Z"),
    ],
)
def test_round_time_floors_to_iso_utc(to: str, value: Any, expected: str) -> None:
    round_time = RoundTime(RoundTimeOptions(to=to))  # type: ignore[arg-type]
    event = round_time(Event.new({"timestamp": value}))
    assert event is not None and event.data["timestamp"] == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "", True, None, {"t": 1}, 1e300, "2024-13-01T00:00:00Z"]
)
def test_round_time_leaves_unparseable_values_unchanged(value: Any) -> None:
    event = RoundTime(RoundTimeOptions(to=3600))(Event.new({"timestamp": value}))
    assert event is not None and event.data["timestamp"] == value


def test_round_time_works_on_the_listed_fields_only() -> None:
    round_time = RoundTime(RoundTimeOptions(fields=["meta.first_seen"], to=86400))
    data = {"timestamp": "2024-03-05T12:34:56Z", "meta": {"first_seen": "2024-01-01T05:00:00Z"}}
    event = round_time(Event.new(data))
    assert event is not None
    assert event.data == {
        "timestamp": "2024-03-05T12:34:56Z",
        "meta": {"first_seen": "2024-01-01T00:00:00Z"},
    }


@pytest.mark.parametrize(
    ("to", "message"), [("500ms", "greater than or equal to 1"), ("1.5s", "whole")]
)
def test_round_time_step_must_be_whole_seconds(to: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RoundTimeOptions.model_validate({"to": to})


