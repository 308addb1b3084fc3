"""copy: a value written to a second path, the original kept (the dual-hash key rotation)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from router.config.loader import loads
from router.errors import ConfigError
from router.event import Event
from router.filters import Pipeline
from router.filters.fields import Copy, RenameOptions

OLD_KEY, NEW_KEY = "the-old-hash-key-0123456789", "the-new-hash-key-0123456789"


def test_copy_keeps_the_original_and_writes_the_copy_at_a_nested_path():
    event = Copy(RenameOptions(fields={"platform.os": "os_copy.name"}))(
        Event.new({"platform": {"os": "linux"}})
    )

    assert event.data == {"platform": {"os": "linux"}, "os_copy": {"name": "linux"}}


def test_a_copied_object_is_independent_of_its_original():
    event = Copy(RenameOptions(fields={"counts": "raw_counts"}))(Event.new({"counts": {"u": 1}}))
    event.data["counts"]["u"] = "0-10"

    assert event.data["raw_counts"] == {"u": 1}


def test_copying_an_absent_path_writes_nothing():
    event = Copy(RenameOptions(fields={"missing": "copy"}))(Event.new({"a": 1}))

    assert event.data == {"a": 1}


def test_copy_to_itself_is_a_config_error():
    with pytest.raises(ConfigError, match=r"pipeline\[0\]\.fields: .*'a' is renamed to itself"):
        loads("pipeline: [{type: copy, fields: {a: a}}]\n", file="router.yaml", env={})


def test_the_dual_hash_recipe_keeps_both_hashes_and_never_the_raw_id():
    config = loads(
        f"""\
pipeline:
  - {{type: copy, fields: {{installation_id: previous_installation_id}}}}
  - {{type: hash, fields: [previous_installation_id], key: {OLD_KEY}}}
  - {{type: hash, fields: [installation_id], key: {NEW_KEY}}}
""",
        file="router.yaml",
        env={},
    )

    event = Pipeline(config.pipeline)(Event.new({"installation_id": "inst-1"}))

    def hmac_hex(key: str) -> str:
        return hmac.new(key.encode(), b"inst-1", hashlib.sha256).hexdigest()

    assert event.data == {
        "installation_id": hmac_hex(NEW_KEY),
        "previous_installation_id": hmac_hex(OLD_KEY),
    }
