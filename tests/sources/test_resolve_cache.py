"""Profile resolution decided per (path, method, User-Agent) and kept, shape tests skipped when
the payload lacks a key they need: the same answer, reason included, as testing every candidate
for every beacon (the rules of docs/sources.md)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.event import Event
from router.sources import FALLBACK, Profile, ProfileConfig, Profiles
from router.sources import resolve as resolve_module
from router.sources.model import GENERIC_PATH


def profile(**keys) -> Profile:
    return Profile(ProfileConfig.model_validate(keys))


def reference(profiles: Profiles, path, method, user_agent, payload):
    """The precedence rules applied candidate by candidate, as written in docs/sources.md."""
    probe = Event(uuid="", received_at="", name="beacon", data=payload)
    best = None
    for p in profiles.candidates(path):
        on_path = path in p.paths
        why = [f"path {path} is listed" if on_path else f"recognised on {path}"]
        if method not in p.methods:
            continue
        ua_hit = False
        if p.user_agent is not None:
            if user_agent is None or not p.user_agent.search(user_agent):
                continue
            ua_hit = True
            why.append(f"User-Agent matches {p.user_agent.pattern!r}")
        shape_hit = False
        if p.shape is not None:
            try:
                holds = bool(p.shape(probe))
            except (TypeError, ValueError):
                holds = False
            if not holds:
                continue
            shape_hit = True
            why.append("payload shape matches")
        rank = (on_path, ua_hit, shape_hit)
        if best is None or rank > best[0]:
            best = (rank, p, "; ".join(why))
    if best is not None:
        return best[1], best[2]
    listed = [p for p in profiles.all if path in p.paths and p.config.source == "beacon"]
    if listed and path != GENERIC_PATH:
        return listed[0], (f"path {path} is listed; no profile's User-Agent or shape test held, "
                           "so its first profile takes it")
    return FALLBACK, f"no profile matched on {path}: the built-in beacon profile"


AGENTS = [None, "A/1", "B/2", "A/1 B/2", "curl/8"]
SHAPES = [None, {"field": "k", "exists": True}, {"field": "v", "equals": 1},
          {"field": "s", "matches": "^x"}, {"field": "k", "exists": False},
          {"field": "v", "in": [2, None]}, {"field": "k.x", "exists": True},
          {"all": [{"field": "k", "exists": True}, {"field": "v", "equals": 2}]},
          {"any": [{"field": "k", "exists": True}, {"field": "s", "equals": "ya"}]},
          {"not": {"field": "v", "equals": 1}}]


@st.composite
def profile_sets(draw):
    made = []
    for i in range(draw(st.integers(1, 6))):
        paths = draw(st.sampled_from([[], ["/beacon"], ["/p"], ["/p", "/beacon"]]))
        agent = draw(st.sampled_from([None, "^A/", "B/"]))
        shape = draw(st.sampled_from(SHAPES))
        if not paths and agent is None and shape is None:
            shape = SHAPES[1]  # a profile must be reachable somehow
        methods = draw(st.sampled_from([["POST"], ["GET", "POST"], ["PUT"]]))
        match = {"methods": methods}
        if agent is not None:
            match["user_agent"] = agent
        if shape is not None:
            match["shape"] = shape
        made.append(profile(name=f"p{i}", paths=paths, match=match))
    return Profiles(made)


payloads = st.fixed_dictionaries({}, optional={
    "k": st.sampled_from([1, {"x": 1}, {}]), "v": st.sampled_from([1, 2, None]),
    "s": st.sampled_from(["xa", "ya", 3])})


@settings(max_examples=300, deadline=None)
@given(profile_sets(), st.lists(st.tuples(st.sampled_from(["/beacon", "/p"]),
                                          st.sampled_from(["GET", "POST", "PUT"]),
                                          st.sampled_from(AGENTS), payloads), max_size=12))
def test_a_kept_decision_resolves_as_testing_every_candidate_would(profiles, beacons):
    for path, method, agent, payload in beacons:  # repeats reuse what was kept
        found = profiles.resolve(path, method, agent, payload)
        assert (found.profile, found.reason) == reference(profiles, path, method, agent, payload)


def test_what_is_kept_stays_bounded_whatever_agents_clients_send():
    profiles = Profiles([profile(name="a", match={"user_agent": "^A/"})])
    for n in range(resolve_module._MAX_PLANS * 2):
        assert profiles.resolve("/beacon", "POST", f"A/{n}", {}).profile.name == "a"
    assert profiles.resolve("/beacon", "POST", "A/" + "x" * 10_000, {}).profile.name == "a"
    assert len(profiles._plans) <= resolve_module._MAX_PLANS
