"""validate, opt_out, sample, dedupe — called directly on events."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from router.errors import BadRequest
from router.event import Event, RequestContext
from router.filters.dedupe import Dedupe, DedupeOptions, MemorySeenSet
from router.filters.quality import (
    OptOut,
    OptOutOptions,
    Sample,
    SampleOptions,
    Validate,
    ValidateOptions,
)

SCHEMA = str(Path(__file__).resolve().parents[2] / "config" / "schemas" / "beacon-v1.json")

OPERATELY = {
    "installation_id": "5b0f6d1c-6f4e-4c43-9d0c-2b7f8a9d1e11",
    "version": "1.4.2",
    "elixir_version": "1.14.0",
    "platform": {"os": "linux", "architecture": "x86_64"},
    "deployment_type": "docker",
    "counts": {"users": 37, "projects": "11-50"},
    "usage_metrics": {"goals_count_range": "1-10", "features_enabled": ["sso"]},
    "features_enabled": ["sso", "ai_features"],
    "timestamp": "2024-01-01T12:00:00Z",
}
# Payloads of other products from the design's reference: no installation_id, other shapes.
OTHERS = {
    "gitlab": {
        "uuid": "0000000-0000-0000-0000-000000000000",
        "hostname": "example.gitlab.com",
        "version": "13.12.0-ee",
        "active_user_count": 100,
        "counts": {"issues": 1000, "merge_requests": 500},
        "settings": {"ldap_enabled": True},
    },
    "docker": {
        "installation_id": "uuid-v4",
        "version": "20.10.7",
        "platform": "linux",
        "architecture": "x86_64",
        "usage_metrics": {"containers_created_24h": 10},
    },
    "nextcloud": {"instance_id": "hashed", "version": "21.0.3", "apps_enabled": ["files"]},
    "discourse": {"discourse_version": "2.7.8", "statistics": {"users_count": 1000}},
    "mastodon": {"software": {"name": "mastodon", "version": "3.4.1"}, "usage": {"users": {}}},
    "posthog": {"version": "1.0.0", "platform": "linux", "user_count_range": "1-10"},
    "epoch_timestamp": {"timestamp": 1704110400},
}


# --- validate ---


def validate(on_invalid: str = "drop") -> Validate:
    return Validate(ValidateOptions.model_validate({"schema": SCHEMA, "on_invalid": on_invalid}))


def test_validate_passes_the_operately_beacon_unchanged() -> None:
    event = validate()(Event.new(json.loads(json.dumps(OPERATELY))))
    assert event is not None and event.data == OPERATELY


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_validate_passes_other_products_payloads(name: str) -> None:
    assert validate()(Event.new(OTHERS[name])) is not None


@pytest.mark.parametrize(
    "data",
    [
        {"installation_id": 12345},
        {"installation_id": "x" * 129},
        {"version": "v" * 65},
        {"platform": {"os": 5}},
        {"counts": {"users": {"nested": 1}}},
        {"features_enabled": "sso"},
        {"features_enabled": [1]},
        {"timestamp": {"at": 1}},
    ],
)
def test_validate_drops_known_fields_of_the_wrong_type(data: dict[str, Any]) -> None:
    assert validate()(Event.new(data)) is None


def test_validate_reject_raises_bad_request_naming_field_and_rule_but_not_the_value() -> None:
    secret_value = 987654321
    with capture_logs() as logs, pytest.raises(BadRequest) as info:
        validate("reject")(Event.new({"installation_id": secret_value}))
    assert "installation_id" in info.value.detail and "type" in info.value.detail
    assert str(secret_value) not in info.value.detail
    assert logs == [
        {"event": "event_invalid", "field": "installation_id", "rule": "type", "log_level": "debug"}
    ]


def test_validate_schema_default_values_are_not_added_to_the_event(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "properties": {"edition": {"default": "ce"}}}')
    event = Validate(ValidateOptions.model_validate({"schema": str(schema)}))(Event.new({}))
    assert event is not None and event.data == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read schema"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"type": "strnig"}', "not a usable JSON Schema"),
        ('{"$ref": "https://example.com/other.json"}', "points outside the schema"),
    ],
)
def test_validate_bad_schema_files_fail_at_option_validation(
    tmp_path: Path, content: str | None, message: str
) -> None:
    schema = tmp_path / "schema.json"
    if content is not None:
        schema.write_text(content)
    with pytest.raises(ValidationError, match=message) as info:
        ValidateOptions.model_validate({"schema": str(schema)})
    assert str(schema) in str(info.value)


# --- opt_out ---


@pytest.mark.parametrize("context", [RequestContext(dnt=True), RequestContext(gpc=True)])
def test_opt_out_drops_on_dnt_or_gpc_headers(context: RequestContext) -> None:
    assert OptOut(OptOutOptions())(Event.new({}, context=context)) is None


def test_opt_out_header_check_can_be_turned_off_and_is_skipped_without_context() -> None:
    headers_off = OptOut(OptOutOptions(headers=False))
    assert headers_off(Event.new({}, context=RequestContext(dnt=True))) is not None
    assert OptOut(OptOutOptions())(Event.new({}, context=None)) is not None
    assert OptOut(OptOutOptions())(Event.new({}, context=RequestContext())) is not None


@pytest.mark.parametrize("flag", [False, "false", "FALSE", " no ", "0", 0, "off", 0.0])
def test_opt_out_drops_when_the_flag_says_off(flag: Any) -> None:
    assert OptOut(OptOutOptions())(Event.new({"telemetry": flag})) is None


@pytest.mark.parametrize("flag", [True, "true", 1, "yes", "on", None, "", [False], {"x": 0}])
def test_opt_out_keeps_other_flag_values(flag: Any) -> None:
    assert OptOut(OptOutOptions())(Event.new({"telemetry": flag})) is not None


def test_opt_out_custom_flag_and_values_keep_json_types_apart() -> None:
    opt_out = OptOut(OptOutOptions(flag="settings.usage_ping_enabled", values=[0, "disabled"]))
    assert opt_out(Event.new({"settings": {"usage_ping_enabled": 0}})) is None
    assert opt_out(Event.new({"settings": {"usage_ping_enabled": "Disabled"}})) is None
    assert opt_out(Event.new({"settings": {"usage_ping_enabled": False}})) is not None  # not 0
    assert opt_out(Event.new({"telemetry": False})) is not None  # the default flag is replaced


def test_opt_out_flag_null_checks_headers_only() -> None:
    assert OptOut(OptOutOptions(flag=None))(Event.new({"telemetry": False})) is not None


# --- sample ---


def ids(n: int) -> list[str]:
    return [f"installation-{i}" for i in range(n)]


def test_sample_rate_zero_drops_all_and_one_keeps_all() -> None:
    none, every = Sample(SampleOptions(rate=0)), Sample(SampleOptions(rate=1, key="id"))
    for i in ids(200):
        assert none(Event.new({"id": i})) is None
        assert every(Event.new({"id": i})) is not None


def test_sample_with_key_decides_the_same_way_for_a_key_in_every_instance() -> None:
    first, second = (Sample(SampleOptions(rate=0.3, key="id")) for _ in range(2))
    decisions = [first(Event.new({"id": i})) is not None for i in ids(500)]
    again = [second(Event.new({"id": i})) is not None for i in ids(500)]
    assert decisions == again
    assert 100 < sum(decisions) < 200  # about 30 % of 500, fixed by the hash


def test_sample_with_key_keeps_about_the_rate() -> None:
    sample = Sample(SampleOptions(rate=0.1, key="id"))
    kept = sum(sample(Event.new({"id": i})) is not None for i in ids(10_000))
    assert 900 <= kept <= 1100


def test_sample_salt_picks_a_different_subset() -> None:
    plain = Sample(SampleOptions(rate=0.5, key="id"))
    salted = Sample(SampleOptions(rate=0.5, key="id", salt="experiment-2"))
    a = {i for i in ids(400) if plain(Event.new({"id": i}))}
    b = {i for i in ids(400) if salted(Event.new({"id": i}))}
    assert a != b


def test_sample_without_key_or_key_value_flips_a_coin_at_the_rate() -> None:
    sample = Sample(SampleOptions(rate=0.25, key="id"), rng=random.Random(7))
    kept = sum(sample(Event.new({})) is not None for _ in range(4000))
    assert 850 <= kept <= 1150


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_sample_rate_must_be_between_zero_and_one(rate: float) -> None:
    with pytest.raises(ValidationError):
        SampleOptions(rate=rate)


# --- dedupe ---


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


HOUR = 3600.0


def dedupe(clock: Clock, **options: Any) -> Dedupe:
    settings = {"fields": ["installation_id"], "window": "24h", **options}
    return Dedupe(DedupeOptions.model_validate(settings), clock=clock)


def test_dedupe_counts_a_retrying_client_once_per_window() -> None:
    clock = Clock()
    filter_ = dedupe(clock)
    kept = []
    for _hour in range(49):  # a client that retries every hour for two days
        kept.append(filter_(Event.new({"installation_id": "a"})) is not None)
        clock.now += HOUR
    # The window runs from the first accepted beacon; retries do not extend it.
    assert [h for h, k in enumerate(kept) if k] == [0, 24, 48]


def test_dedupe_keeps_different_installations_apart() -> None:
    clock = Clock()
    filter_ = dedupe(clock)
    assert filter_(Event.new({"installation_id": "a"})) is not None
    assert filter_(Event.new({"installation_id": "b"})) is not None
    assert filter_(Event.new({"installation_id": "a"})) is None


def test_dedupe_never_drops_events_without_any_key_field() -> None:
    filter_ = dedupe(Clock())
    assert all(filter_(Event.new({"version": "1"})) is not None for _ in range(3))


def test_dedupe_with_several_fields_tells_values_and_missing_fields_apart() -> None:
    filter_ = dedupe(Clock(), fields=["a", "b"])
    for data in ({"a": "xy", "b": "z"}, {"a": "x", "b": "yz"}, {"a": "xy"}, {"b": "xy"}):
        assert filter_(Event.new(data)) is not None
    assert filter_(Event.new({"a": "xy", "b": "z"})) is None


def test_dedupe_by_event_name_unless_turned_off() -> None:
    by_name, any_name = dedupe(Clock()), dedupe(Clock(), by_name=False)
    for filter_, second_kept in ((by_name, True), (any_name, False)):
        assert filter_(Event.new({"installation_id": "a"}, name="heartbeat")) is not None
        second = filter_(Event.new({"installation_id": "a"}, name="feature_used"))
        assert (second is not None) is second_kept


class RecordingSeenSet(MemorySeenSet):
    """The in-memory set, also keeping every key it was asked about."""

    def __init__(self) -> None:
        super().__init__(window=HOUR, max_keys=10)
        self.keys: list[bytes] = []

    def seen(self, key: bytes, now: float) -> bool:
        self.keys.append(key)
        return super().seen(key, now)


def test_dedupe_keys_its_seen_set_by_digest_not_by_value() -> None:
    seen = RecordingSeenSet()
    options = DedupeOptions(fields=["installation_id"], window=HOUR)
    filter_ = Dedupe(options, seen=seen, clock=Clock())
    filter_(Event.new({"installation_id": "5b0f6d1c-raw-id"}))
    filter_(Event.new({"installation_id": "5b0f6d1c-raw-id"}))
    assert len(seen.keys) == 2 and seen.keys[0] == seen.keys[1]
    assert len(seen.keys[0]) == 16 and b"5b0f6d1c" not in seen.keys[0]


def test_memory_seen_set_is_bounded_and_forgets_the_oldest_first() -> None:
    seen = MemorySeenSet(window=HOUR, max_keys=3)
    for i in range(5):
        assert seen.seen(b"k%d" % i, now=float(i)) is False
    assert len(seen) == 3
    assert seen.seen(b"k4", now=5.0) is True
    assert seen.seen(b"k0", now=5.0) is False  # evicted to stay under max_keys, so new again


def test_memory_seen_set_expires_keys_after_the_window() -> None:
    seen = MemorySeenSet(window=10.0, max_keys=100)
    assert seen.seen(b"a", now=0.0) is False
    assert seen.seen(b"b", now=5.0) is False
    assert seen.seen(b"a", now=9.9) is True
    assert seen.seen(b"c", now=12.0) is False
    assert len(seen) == 2  # "a" expired and was let go
    assert seen.seen(b"a", now=12.0) is False


@pytest.mark.parametrize(
    "options",
    [
        {"fields": [], "window": "1h"},
        {"fields": ["id"], "window": "0s"},
        {"fields": ["id"], "window": "1h", "max_keys": 0},
        {"fields": ["id"]},
    ],
)
def test_dedupe_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DedupeOptions.model_validate(options)
