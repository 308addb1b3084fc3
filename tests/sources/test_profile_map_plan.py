"""Profile.map's plan (worked out once per profile) maps exactly as the straightforward code.

The reference below is what ``map`` ran before its plan existed: every source read through
``_Source.read`` before any move, the moved fields deleted, ``drop`` applied, the values set
with ``set_path``, the product named. Every shipped profile (and the built-in fallback) is run on
random payloads built from the paths it names, and on the products' real payloads.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config.loader import load
from router.event import _MISSING, delete_path, set_path
from router.sources.profile import FALLBACK, Profile, RequestFacts

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "reference"


def reference_map(profile: Profile, data: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
    values = [(s, s.read(data, facts)) for s in profile._sources]
    for source, _ in values:
        if source.path is not None and not source.spec.keep and source.path != source.common:
            delete_path(data, source.path)
    for path in profile._drop:
        delete_path(data, path)
    for source, value in values:
        if value is not _MISSING and value is not None:
            set_path(data, source.common, value)
    data["product"] = profile.product(data)
    return data


def _profiles() -> list[Profile]:
    cwd = os.getcwd()
    os.chdir(REPO)  # the shipped config's sources.include is relative to the working directory
    try:
        config = load(str(REPO / "config" / "router.yaml"), env={"BEACON_HASH_KEY": "k" * 32})
    finally:
        os.chdir(cwd)
    return [*config.profiles.by_name.values(), FALLBACK]


PROFILES = _profiles()
FACTS = RequestFacts(headers={"User-Agent": "GitLab/16.0", "Referer": "https://a.example/x"},
                     path_params={"id": "p1"})


def _paths(profile: Profile) -> list[tuple[str, ...]]:
    named = [s.path for s in profile._sources if s.path is not None]
    return [*named, *(s.common for s in profile._sources), *profile._drop, ("product",)]


def _doc(paths: list[tuple[str, ...]], picks: list[tuple[int, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for index, value in picks:
        path = paths[index % len(paths)]
        set_path(data, path[: 1 + index % len(path)], value)
    return data


values = (st.none() | st.integers(0, 9) | st.sampled_from(["", "x", "docker/24.0", "v1.2"])
          | st.dictionaries(st.sampled_from(["a", "id"]), st.integers(0, 3), max_size=2))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
@settings(max_examples=150)
@given(picks=st.lists(st.tuples(st.integers(0, 50), values), max_size=6))
def test_map_is_the_reference_on_random_payloads(profile: Profile,
                                                 picks: list[tuple[int, Any]]) -> None:
    data = _doc(_paths(profile), picks)
    expected = reference_map(profile, copy.deepcopy(data), FACTS)
    mapped = profile.map(data, FACTS)
    assert mapped == expected
    assert list(mapped) == list(expected)  # key order: the order the event is spooled in


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_map_is_the_reference_on_the_products_payloads(profile: Profile) -> None:
    for fixture in sorted(FIXTURES.glob("*.json")):
        if fixture.name == "index.json":
            continue
        doc = orjson.loads(fixture.read_bytes())
        for data in doc if isinstance(doc, list) else [doc]:
            if isinstance(data, dict):
                expected = reference_map(profile, copy.deepcopy(data), FACTS)
                assert profile.map(copy.deepcopy(data), FACTS) == expected


def test_both_plans_are_among_the_shipped_profiles() -> None:
    # The tests above then check the copy plan (PostHog's: one top-level key to another) and
    # the general one against the reference.
    by_name = {p.name: p for p in PROFILES}
    assert by_name["posthog"]._copies == [("distinct_id", "installation_id")]
    assert any(p._copies is None for p in PROFILES)
