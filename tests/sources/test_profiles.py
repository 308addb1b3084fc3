"""Source profiles: precedence (path, method, User-Agent, shape), mapping, config errors."""

from __future__ import annotations

import pytest
import yaml
from support import REPO

from router.config.loader import load, loads
from router.errors import ConfigError
from router.event import Event
from router.filters.privacy import Bucket, BucketOptions
from router.sources import FALLBACK, Profile, ProfileConfig, Profiles, RequestFacts
from router.sources.model import RESERVED
from router.web.paths import V0_PATHS, V1_PATH


def profile(**keys) -> Profile:
    return Profile(ProfileConfig.model_validate(keys))


GITLAB = profile(name="gitlab", paths=["/usage_data"],
                 match={"user_agent": "^GitLab/", "shape": {"field": "uuid", "exists": True}},
                 fields={"installation_id": "uuid"}, drop=["license_md5"])
BY_AGENT = profile(name="agent", match={"user_agent": "^Agent/"})
BY_SHAPE = profile(name="shape", match={"shape": {"field": "uuid", "exists": True}})
OWN_BEACON = profile(name="own", paths=["/beacon"], match={"user_agent": "^Own/"})


def test_a_profile_listing_the_path_beats_one_recognised_on_beacon():
    profiles = Profiles([BY_SHAPE, profile(name="listed", paths=["/beacon"])])
    found = profiles.resolve("/beacon", "POST", None, {"uuid": "x"})
    assert found.profile.name == "listed" and "path /beacon is listed" in found.reason


def test_a_matching_user_agent_beats_a_matching_shape():
    profiles = Profiles([BY_SHAPE, BY_AGENT])
    found = profiles.resolve("/beacon", "POST", "Agent/1.0", {"uuid": "x"})
    assert found.profile.name == "agent" and "User-Agent matches" in found.reason


def test_the_shape_tells_apart_what_the_path_and_agent_do_not():
    profiles = Profiles([BY_SHAPE])
    assert profiles.resolve("/beacon", "POST", "curl/8", {"uuid": "x"}).profile is BY_SHAPE
    assert profiles.resolve("/beacon", "POST", "curl/8", {"id": "x"}).profile is FALLBACK


def test_every_declared_test_must_hold_and_the_first_declared_wins_a_tie():
    twin = profile(name="twin", match={"user_agent": "^Agent/"})
    profiles = Profiles([BY_AGENT, twin, OWN_BEACON])
    assert profiles.resolve("/beacon", "POST", "Agent/2", {}).profile is BY_AGENT
    assert profiles.resolve("/beacon", "POST", "Own/1", {}).profile is OWN_BEACON
    assert profiles.resolve("/beacon", "POST", "Other/1", {}).profile is FALLBACK


def test_a_products_own_path_is_never_turned_away_by_its_tests():
    found = Profiles([GITLAB]).resolve("/usage_data", "POST", "curl/8", {"a": 1})
    assert found.profile is GITLAB and "first profile takes it" in found.reason


def test_the_method_must_be_one_the_profile_lists():
    put_only = profile(name="put", paths=["/push"], match={"methods": ["PUT"]})
    profiles = Profiles([put_only])
    assert profiles.routes()["/push"] == {"PUT"}
    assert profiles.routes()["/beacon"] == {"POST"}


def test_mapping_moves_the_identity_drops_identifiers_and_names_the_product():
    data = {"uuid": "id-1", "license_md5": "abc", "version": "13.0"}
    GITLAB.map(data, RequestFacts())
    assert data == {"installation_id": "id-1", "version": "13.0", "product": "gitlab"}


def test_mapping_reads_headers_with_a_pattern_and_path_variables():
    wp = profile(name="wp", paths=["/vc/{site}"], fields={
        "installation_id": {"header": "User-Agent", "pattern": r"^WordPress/[^;]*;\s*(\S+)"},
        "site": {"path": "site"}, "deployment_type": {"value": "php"}})
    facts = RequestFacts(headers={"User-Agent": "WordPress/5.8; https://b.example"},
                         path_params={"site": "s1"})
    assert wp.map({}, facts) == {"installation_id": "https://b.example", "site": "s1",
                                 "deployment_type": "php", "product": "wp"}
    assert "installation_id" not in wp.map({}, RequestFacts(headers={"User-Agent": "curl"}))


def test_unmap_gives_the_payload_back_in_the_products_shape():
    k8s = profile(name="k8s", match={"shape": {"field": "cluster_info", "exists": True}},
                  fields={"installation_id": "cluster_info.cluster_uid",
                          "counts.nodes": "cluster_info.node_count",
                          "copy": {"field": "cluster_info.region", "keep": True}})
    sent = {"cluster_info": {"cluster_uid": "u", "node_count": 5, "region": "eu"}}
    mapped = k8s.map(dict(sent, cluster_info=dict(sent["cluster_info"])), RequestFacts())
    assert mapped["installation_id"] == "u" and mapped["copy"] == "eu"
    back = k8s.unmap(mapped)
    assert back["cluster_info"] == sent["cluster_info"] and "product" not in back


def test_the_fallback_keeps_a_clients_product_else_unknown():
    assert FALLBACK.map({"product": "mine"}, RequestFacts())["product"] == "mine"
    assert FALLBACK.map({}, RequestFacts())["product"] == "unknown"


def test_an_event_id_is_read_only_where_the_profile_names_one():
    assert GITLAB.event_uuid({"uuid": "u"}) is None
    assert profile(name="sdk", paths=["/events"], event_id="uuid").event_uuid({"uuid": "u"}) == "u"


def test_bucket_with_a_wildcard_buckets_every_count():
    bucket = Bucket(BucketOptions(fields=["counts.*"], edges=[10, 100]))
    event = Event.new({"counts": {"issues": 1000, "projects": 5, "name": "x"}})
    assert bucket(event).data["counts"] == {"issues": "101+", "projects": "0-10", "name": "x"}


@pytest.mark.parametrize(("keys", "message"), [
    ({"name": "x"}, "give `paths`, or a `match.user_agent`"),
    ({"name": "x", "paths": ["nope"]}, "is not a path"),
    ({"name": "x", "paths": ["/metrics"]}, "the router's own path"),
    ({"name": "x", "paths": ["/a"], "answer": {"status": 404}}, "less than or equal to 299"),
    ({"name": "x", "paths": ["/a"], "fields": {"installation_id": {"path": "id"}}},
     "no path has a {id} segment"),
    ({"name": "x", "paths": ["/a"], "fields": {"a": {"header": "X", "pattern": "nogroup"}}},
     "exactly one (group)"),
    ({"name": "x", "paths": ["/a"], "match": {"methods": ["DELETE"]}}, "one of GET, POST, PUT"),
])
def test_a_bad_profile_is_a_config_error_naming_its_key(keys, message):
    text = "sources:\n  profiles:\n    - " + yaml.safe_dump(keys, default_flow_style=True)
    with pytest.raises(ConfigError) as caught:
        loads(text, "router.yaml")
    assert message in str(caught.value) and "router.yaml:3: sources.profiles[0]" in str(
        caught.value)


def test_an_included_file_error_names_that_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("name: x\npaths: [/a]\nanswer: {status: 500}\n")
    with pytest.raises(ConfigError) as caught:
        loads("sources: {include: [p.yaml]}\n", "router.yaml")
    assert str(caught.value).startswith("p.yaml:3: answer.status:")
    with pytest.raises(ConfigError, match="matches no file"):
        loads("sources: {include: [none/*.yaml]}\n", "router.yaml")


def test_a_users_profile_replaces_the_included_one_of_its_name(monkeypatch):
    monkeypatch.chdir(REPO)
    config = loads("sources:\n  include: [config/sources/*.yaml]\n  profiles:\n"
                   "    - {name: gitlab, paths: [/gitlab], answer: {status: 202}}\n")
    assert config.profiles.by_name["gitlab"].paths == ("/gitlab",)
    assert config.profiles.all[0].name == "gitlab"  # and it comes first


def test_the_shipped_profiles_load(monkeypatch):
    monkeypatch.chdir(REPO)
    config = load("config/router.yaml")
    names = {p.name for p in config.profiles.all}
    assert {"operately", "operately-ping", "gitlab", "docker", "kubernetes", "nextcloud",
            "prometheus", "plausible", "discourse", "wordpress", "mastodon", "posthog"} == names
    assert config.profiles.posthog is not None and config.profiles.posthog.name == "posthog"


def test_the_posthog_capture_paths_are_reserved_for_the_capture_api():
    assert {*V0_PATHS, V1_PATH} <= RESERVED
    with pytest.raises(ConfigError, match="the router's own path"):
        loads("sources: {profiles: [{name: x, paths: [/capture/]}]}\n")


def test_unmap_leaves_out_what_the_payload_did_not_hold():
    wp = profile(name="wp", paths=["/vc"], fields={
        "installation_id": {"header": "Referer"}, "version": "wp_version"})
    mapped = wp.map({"wp_version": "6.0", "users": 3},
                    RequestFacts(headers={"Referer": "https://b.example"}))
    assert wp.unmap(mapped) == {"wp_version": "6.0", "users": 3}
