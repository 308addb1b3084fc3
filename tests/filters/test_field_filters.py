"""drop, keep, rename, set, default, coerce — called directly on events."""

from __future__ import annotations

from typing import Any

import pytest

from router.event import Event
from router.filters.coerce import Coerce, CoerceOptions
from router.filters.fields import (
    AssignOptions,
    Default,
    Drop,
    FieldsOptions,
    Keep,
    Rename,
    RenameOptions,
    Set,
)


def beacon() -> dict[str, Any]:
    return {
        "installation_id": "5b0f6d1c-6f4e-4c43-9d0c-2b7f8a9d1e11",
        "version": "1.4.2",
        "hostname": "ops.example.com",
        "admin_email": "root@example.com",
        "platform": {"os": "linux", "architecture": "x86_64"},
        "counts": {"users": 37, "projects": 5},
        "tags": ["a", "b"],
    }


# --- drop ---


def test_drop_removes_top_level_and_nested_paths() -> None:
    event = Drop(FieldsOptions(fields=["hostname", "admin_email", "platform.architecture"]))(
        Event.new(beacon())
    )
    assert event is not None
    assert "hostname" not in event.data and "admin_email" not in event.data
    assert event.data["platform"] == {"os": "linux"}
    assert event.data["version"] == "1.4.2"


def test_drop_ignores_missing_paths_and_non_object_parents() -> None:
    data = {"platform": "linux", "a": 1}
    event = Drop(FieldsOptions(fields=["hostname", "platform.os", "a.b"]))(Event.new(data))
    assert event is not None and event.data == {"platform": "linux", "a": 1}


# --- keep ---


def test_keep_removes_everything_not_listed() -> None:
    keep = Keep(FieldsOptions(fields=["installation_id", "version", "platform.os"]))
    event = keep(Event.new(beacon()))
    assert event is not None
    assert event.data == {
        "installation_id": "5b0f6d1c-6f4e-4c43-9d0c-2b7f8a9d1e11",
        "version": "1.4.2",
        "platform": {"os": "linux"},
    }


def test_keep_of_a_parent_keeps_the_whole_subtree_whatever_the_order() -> None:
    for fields in (["platform", "platform.os"], ["platform.os", "platform"]):
        event = Keep(FieldsOptions(fields=fields))(Event.new(beacon()))
        assert event is not None
        assert event.data == {"platform": {"os": "linux", "architecture": "x86_64"}}


def test_keep_omits_objects_left_empty_and_non_objects_under_a_nested_path() -> None:
    keep = Keep(FieldsOptions(fields=["platform.os", "counts.missing"]))
    event = keep(Event.new({"platform": "linux", "counts": {"users": 3}}))
    assert event is not None and event.data == {}


def test_keep_keeps_lists_whole() -> None:
    event = Keep(FieldsOptions(fields=["tags"]))(Event.new(beacon()))
    assert event is not None and event.data == {"tags": ["a", "b"]}


# --- rename ---


def test_rename_moves_values_and_creates_parents() -> None:
    rename = Rename(RenameOptions(fields={"counts.users": "users.total", "version": "app_version"}))
    event = rename(Event.new(beacon()))
    assert event is not None
    assert event.data["users"] == {"total": 37}
    assert event.data["counts"] == {"projects": 5}
    assert event.data["app_version"] == "1.4.2" and "version" not in event.data


def test_rename_replaces_an_existing_target_and_skips_missing_sources() -> None:
    rename = Rename(RenameOptions(fields={"hostname": "version", "nope": "other"}))
    event = rename(Event.new(beacon()))
    assert event is not None
    assert event.data["version"] == "ops.example.com"
    assert "other" not in event.data


def test_rename_keeps_a_null_value() -> None:
    event = Rename(RenameOptions(fields={"a": "b"}))(Event.new({"a": None}))
    assert event is not None and event.data == {"b": None}


# --- set / default ---


def test_set_overwrites_and_default_fills_only_absent_paths() -> None:
    data = {"deployment_type": "docker", "edition": None}
    values = {"deployment_type": "unknown", "edition": "ce", "platform.os": "unknown"}
    after_default = Default(AssignOptions(fields=values))(Event.new(dict(data)))
    after_set = Set(AssignOptions(fields=values))(Event.new(dict(data)))
    assert after_default is not None and after_set is not None
    assert after_default.data == {
        "deployment_type": "docker",
        "edition": None,  # an explicit null is a value the client sent
        "platform": {"os": "unknown"},
    }
    assert after_set.data == {
        "deployment_type": "unknown",
        "edition": "ce",
        "platform": {"os": "unknown"},
    }


def test_set_gives_each_event_its_own_copy_of_a_container_value() -> None:
    set_ = Set(AssignOptions(fields={"meta": {"tags": ["x"]}}))
    first, second = set_(Event.new({})), set_(Event.new({}))
    assert first is not None and second is not None
    first.data["meta"]["tags"].append("changed")
    assert second.data["meta"] == {"tags": ["x"]}


def test_set_options_turn_yaml_dates_into_iso_text_and_refuse_non_json_values() -> None:
    import datetime

    options = AssignOptions(fields={"since": datetime.date(2024, 1, 2)})
    assert options.fields == {"since": "2024-01-02"}
    with pytest.raises(ValueError, match="not a JSON value"):
        AssignOptions(fields={"raw": b"\x00"})


# --- coerce ---


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("int", "37", 37),
        ("int", " -4 ", -4),
        ("int", "37.0", 37),
        ("int", 12.0, 12),
        ("int", True, 1),
        ("int", 5, 5),
        ("float", "0.25", 0.25),
        ("float", "1e3", 1000.0),
        ("float", 3, 3.0),
        ("str", 37, "37"),
        ("str", 1.5, "1.5"),
        ("str", True, "true"),
        ("str", "x", "x"),
        ("bool", "true", True),
        ("bool", "OFF", False),
        ("bool", "yes", True),
        ("bool", "0", False),
        ("bool", 1, True),
        ("bool", 0.0, False),
    ],
)
def test_coerce_converts(kind: str, value: Any, expected: Any) -> None:
    coerce = Coerce(CoerceOptions(fields={"f": kind}))  # type: ignore[dict-item]
    event = coerce(Event.new({"f": value}))
    assert event is not None
    assert event.data["f"] == expected and type(event.data["f"]) is type(expected)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int", "3.7"),
        ("int", 3.5),
        ("int", "thirty"),
        ("int", "9" * 5000),
        ("int", None),
        ("float", "nan"),
        ("float", "inf"),
        ("float", "1_000"),
        ("float", [1]),
        ("float", 10**400),
        ("str", None),
        ("str", {"a": 1}),
        ("bool", "maybe"),
        ("bool", 2),
        ("bool", ""),
    ],
)
def test_coerce_failures_follow_on_error(kind: str, value: Any) -> None:
    def run(on_error: str) -> Event | None:
        options = CoerceOptions(fields={"f": kind}, on_error=on_error)  # type: ignore[arg-type,dict-item]
        return Coerce(options)(Event.new({"f": value, "other": 1}))

    kept, removed, dropped = run("keep"), run("remove"), run("drop_event")
    assert kept is not None and kept.data == {"f": value, "other": 1}
    assert removed is not None and removed.data == {"other": 1}
    assert dropped is None


def test_coerce_skips_missing_fields_and_replaces_inside_lists_without_reshaping() -> None:
    coerce = Coerce(CoerceOptions(fields={"counts.0": "int", "absent": "int"}))
    event = coerce(Event.new({"counts": ["4", "5"]}))
    assert event is not None and event.data == {"counts": [4, "5"]}
