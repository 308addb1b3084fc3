"""The compiled filters give exactly what the straightforward evaluation gives (issue 14).

Each reference below is the code the filter ran before it was compiled: paths expanded by a
generator per event, each concrete path walked again from the root, HMAC from ``hmac.new``. The
compiled pipeline must leave every event as they do: random documents and paths (wildcards in
every position, lists, missing parts), the bench's beacon and the products' real payloads.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config.loader import load
from router.event import _MISSING, Event, delete_path, get_path, set_path, split_path
from router.filters import Pipeline, privacy
from router.filters.fields import Drop, FieldsOptions, replace_path
from router.filters.privacy import Bucket, BucketOptions, Hash, HashOptions, canonical_bytes
from router.filters.wildcard import expand
from router.sources.profile import RequestFacts

REPO = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef-test-key"

# --- the references: the straightforward evaluation ------------------------------------------


def reference_hash(hash_: Hash, data: dict[str, Any]) -> None:
    options = hash_.options
    key = options.key.get_secret_value().encode()
    for pattern in (split_path(p) for p in options.fields):
        for path in expand(data, pattern):
            value = get_path(data, path, _MISSING)
            if value is not _MISSING and value is not None:
                mac = hmac.new(key, canonical_bytes(value), hashlib.sha256)
                replace_path(data, path, mac.hexdigest()[: options.length])


def reference_bucket(bucket: Bucket, data: dict[str, Any]) -> None:
    options = bucket.options
    target = split_path(options.target) if options.target is not None else None
    for pattern in (split_path(p) for p in options.paths):
        for path in expand(data, pattern):
            value = get_path(data, path, _MISSING)
            if value is _MISSING:
                continue
            label = bucket.label(value)
            if label is None:
                continue
            if target is not None:
                set_path(data, target, label)
            else:
                replace_path(data, path, label)


def reference_drop(drop: Drop, data: dict[str, Any]) -> None:
    for pattern in (split_path(p) for p in drop.options.fields):
        for path in list(expand(data, pattern)):
            delete_path(data, path)


REFERENCES = {Hash: reference_hash, Bucket: reference_bucket, Drop: reference_drop}


def reference_pipeline(pipeline: Pipeline, event: Event) -> dict[str, Any] | None:
    """The event's data after each step in turn, through a reference where there is one."""
    for _name, step, when in pipeline._steps:
        if when is not None and not when(event):
            continue
        reference = REFERENCES.get(type(step))
        if reference is not None:
            reference(step, event.data)  # type: ignore[operator]
        elif step(event) is None:
            return None
    return event.data


def outcome(run: Any, data: dict[str, Any], source: str) -> Any:
    """What ``run`` makes of a copy of ``data``: the data kept, None, or the error it raised."""
    try:
        return run(Event.new(copy.deepcopy(data), source=source))
    except Exception as exc:  # validate's on_invalid: reject
        return type(exc), str(exc)


def same_as_reference(pipeline: Pipeline, data: dict[str, Any], source: str = "beacon") -> None:
    kept = outcome(pipeline, data, source)
    if isinstance(kept, Event):
        kept = kept.data
    assert kept == outcome(lambda e: reference_pipeline(pipeline, e), data, source)


# --- random documents and paths ----------------------------------------------------------------

KEYS = ["a", "b", "counts", "0", "1", "users", "*"]
scalars = (st.none() | st.booleans() | st.integers(-300, 3000) | st.floats(allow_nan=False)
           | st.sampled_from(["37", " 12 ", "1e3", "x", "", "٣", "-5"]))
docs = st.recursive(
    scalars,
    lambda inner: st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    | st.lists(inner, max_size=3),
    max_leaves=16,
)
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(".".join)


@settings(max_examples=500)
@given(doc=st.dictionaries(st.sampled_from(KEYS), docs, max_size=5),
       fields=st.lists(paths, min_size=1, max_size=5))
def test_drop_removes_what_expand_names(doc: dict[str, Any], fields: list[str]) -> None:
    # Paths with and without `*`, nested in each other, named twice, through lists: the same
    # result as expanding each path in the order written and deleting what it names.
    drop = Drop(FieldsOptions(fields=fields))
    expected = copy.deepcopy(doc)
    reference_drop(drop, expected)
    assert drop(Event.new(doc)).data == expected  # type: ignore[union-attr]


@settings(max_examples=500)
@given(doc=st.dictionaries(st.sampled_from(KEYS), docs, max_size=5),
       fields=st.lists(paths, min_size=1, max_size=4), length=st.sampled_from([8, 64]))
def test_hash_visits_what_expand_names(doc: dict[str, Any], fields: list[str],
                                       length: int) -> None:
    hash_ = Hash(HashOptions(fields=fields, key=KEY, length=length))
    expected = copy.deepcopy(doc)
    reference_hash(hash_, expected)
    assert hash_(Event.new(doc)).data == expected  # type: ignore[union-attr]


@settings(max_examples=500)
@given(doc=st.dictionaries(st.sampled_from(KEYS), docs, max_size=5),
       fields=st.lists(paths, min_size=1, max_size=4),
       edges=st.sampled_from([[10, 50, 200, 1000], [-5, 0, 7], [0.5, 2.5]]),
       labels=st.booleans())
def test_bucket_visits_what_expand_names(doc: dict[str, Any], fields: list[str],
                                         edges: list[Any], labels: bool) -> None:
    # Own labels that are numbers themselves: a path named twice buckets its label again.
    own = [str(i * 3) for i in range(len(edges) + 1)] if labels else None
    bucket = Bucket(BucketOptions(fields=fields, edges=edges, labels=own))
    expected = copy.deepcopy(doc)
    reference_bucket(bucket, expected)
    assert bucket(Event.new(doc)).data == expected  # type: ignore[union-attr]


@given(doc=st.dictionaries(st.sampled_from(KEYS), docs, max_size=5),
       field=st.lists(st.sampled_from(KEYS[:-1]), min_size=1, max_size=3).map(".".join),
       target=st.sampled_from(["label", "a.label", "counts"]))
def test_bucket_with_a_target_as_before(doc: dict[str, Any], field: str, target: str) -> None:
    bucket = Bucket(BucketOptions(field=field, edges=[10, 50], target=target))
    expected = copy.deepcopy(doc)
    reference_bucket(bucket, expected)
    assert bucket(Event.new(doc)).data == expected  # type: ignore[union-attr]


@given(key=st.binary(min_size=16, max_size=200).map(bytes.hex), value=st.text())
def test_hash_of_any_key_length_is_hmac(key: str, value: str) -> None:
    # Keys longer than SHA-256's 64-byte block are hashed first, as HMAC does.
    hash_ = Hash(HashOptions(fields=["v"], key=key))
    assert hash_.digest(value) == hmac.new(key.encode(), value.encode(), "sha256").hexdigest()


# --- the shipped pipeline -------------------------------------------------------------------------


@functools.cache
def shipped_config() -> Any:
    """The shipped config (paths in it are relative to the repository)."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return load("config/router.yaml", env={"BEACON_HASH_KEY": KEY})
    finally:
        os.chdir(cwd)


@functools.cache
def shipped() -> Pipeline:
    return Pipeline(shipped_config().pipeline)


def bench_beacon(n: int) -> dict[str, Any]:
    import sys
    sys.path.insert(0, str(REPO / "bench"))
    from prefill import beacon
    return orjson.loads(beacon(n))  # type: ignore[no-any-return]


def test_shipped_pipeline_on_the_bench_beacons_as_the_reference() -> None:
    pipeline = shipped()
    for n in range(300):
        same_as_reference(pipeline, bench_beacon(n))


def test_shipped_pipeline_on_the_products_payloads_as_the_reference() -> None:
    pipeline = shipped()
    fixtures = REPO / "tests" / "fixtures" / "reference"
    payloads = [json.loads((fixtures / name).read_text())
                for name in sorted(json.loads((fixtures / "index.json").read_text()))
                if name.endswith(".json")]
    profiles = shipped_config().profiles.all
    for payload in payloads:
        for one in payload if isinstance(payload, list) else [payload]:
            for source in ("beacon", "posthog", "gitlab"):
                same_as_reference(pipeline, one, source)
            for profile in profiles:  # as each profile maps it at ingest
                same_as_reference(pipeline, profile.map(copy.deepcopy(one), RequestFacts()))
                # PostHog SDKs nest the counts under properties: the second wildcard path.
                same_as_reference(pipeline, {"properties": copy.deepcopy(one),
                                             "distinct_id": "d"}, source)


shipped_keys = st.sampled_from(
    ["installation_id", "distinct_id", "counts", "properties", "active_user_count",
     "user_count", "timestamp", "telemetry", "hostname", "version", "users", "$ip", "email"])
shipped_docs = st.recursive(
    scalars | st.sampled_from(["2025-11-28T00:10:11Z", "a@b.io", "10.0.0.1", "fe80::1"]),
    lambda inner: st.dictionaries(shipped_keys, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=16,
)


@settings(max_examples=300)
@given(doc=st.dictionaries(shipped_keys, shipped_docs, max_size=8))
def test_shipped_pipeline_on_random_documents_as_the_reference(doc: dict[str, Any]) -> None:
    same_as_reference(shipped(), doc)


def test_a_key_named_star_is_one_key_not_a_recursion_without_end() -> None:
    # expand substituted "*" for "*" and expanded the result again, until RecursionError: a
    # beacon {"counts": {"*": 5}} failed the shipped pipeline.
    assert list(expand({"counts": {"*": 5, "a": 3}}, ("counts", "*"))) == [
        ("counts", "*"), ("counts", "a")]
    kept = shipped()(Event.new({"counts": {"*": 5, "a": 300}}))
    assert kept is not None and kept.data == {"counts": {"*": "0-10", "a": "201-1000"}}


def test_a_drop_is_counted_by_its_filter_with_or_without_a_when() -> None:
    drops: list[tuple[str, str]] = []
    config = load_text_config("""
pipeline:
  - {type: sample, rate: 0, when: {field: sampled, exists: true}}
  - {type: opt_out, when: {source: posthog}}
  - {type: coerce, fields: {n: int}, on_error: drop_event}
""")
    pipeline = Pipeline(config.pipeline, on_drop=lambda name, reason: drops.append((name, reason)))
    assert pipeline(Event.new({"sampled": 1})) is None
    assert pipeline(Event.new({"telemetry": False}, source="posthog")) is None
    kept = pipeline(Event.new({"telemetry": False, "n": "1"}))  # opt_out: posthog's only
    assert kept is not None and kept.data == {"telemetry": False, "n": 1}
    assert pipeline(Event.new({"n": "x"}, source="posthog")) is None
    assert drops == [("sample", "sampled_out"), ("opt_out", "opted_out"),
                     ("coerce", "coerce_failed")]


def load_text_config(pipeline_yaml: str) -> Any:
    from router.config.loader import loads
    return loads("spool: {type: sqlite, path: ./data/spool.db}\n" + pipeline_yaml
                 + "backends: {a: {type: file, path: ./data/a.jsonl}}\n", "t.yaml")


@pytest.mark.parametrize("sha256", [hashlib.sha256, privacy._sha256], ids=["hashlib", "builtin"])
def test_hash_is_hmac_with_either_sha256(monkeypatch: pytest.MonkeyPatch, sha256: Any) -> None:
    # Where CPython has no SHA-256 of its own, hashlib's (OpenSSL's) is used: same digests.
    monkeypatch.setattr(privacy, "_sha256", sha256)
    for key in ("k" * 16, "k" * 64, "k" * 65, "ключ-" * 20):
        hash_ = Hash(HashOptions(fields=["v", "n"], key=key, length=40))
        event = hash_(Event.new({"v": "installation", "n": [1, {"a": None}]}))
        expected = {name: hmac.new(key.encode(), canonical_bytes(value), "sha256").hexdigest()[:40]
                    for name, value in (("v", "installation"), ("n", [1, {"a": None}]))}
        assert event is not None and event.data == expected


@pytest.mark.parametrize("fields", [["installation_id", "distinct_id"],
                                    ["distinct_id", "installation_id", "distinct_id"],
                                    ["installation_id", "counts.*", "distinct_id"]])
def test_hash_of_one_text_at_two_keys_is_the_reference(fields: list[str]) -> None:
    # The PostHog profile copies distinct_id to installation_id (`keep: true`): the same str
    # object at both keys, hashed once and reused. A key named twice is hashed twice (a hash
    # of the hash), an equal text in another object is hashed on its own, null stays null.
    text = "".join(["0000007-", "00000001"])  # built, not a literal shared with another
    for doc in ({"installation_id": text, "distinct_id": text, "counts": {"a": text}},
                {"installation_id": text, "distinct_id": "".join(["0000007-", "00000001"])},
                {"installation_id": None, "distinct_id": None},
                {"installation_id": {"a": 1}, "distinct_id": text}):
        hash_ = Hash(HashOptions(fields=fields, key=KEY, length=16))
        expected = copy.deepcopy(doc)
        reference_hash(hash_, expected)
        assert hash_(Event.new(doc)).data == expected  # type: ignore[union-attr]
