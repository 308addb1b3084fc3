"""Which profile a beacon belongs to, and why: path, then method, then User-Agent, then shape.

Candidates on a path are the profiles that list it; on ``/beacon`` also every profile with a
User-Agent or shape test. A candidate qualifies when each test it declares holds. Among the
qualified, the most specific wins, compared in this order (docs/sources.md):

1. path — a profile that lists the path beats one merely recognisable on ``/beacon``;
2. method — one whose methods include the request's;
3. User-Agent — one whose pattern matched beats one without a pattern;
4. payload shape — one whose shape matched beats one without a shape;

and among equals the first declared (``sources.profiles`` before included files). When no
candidate qualifies, a path's first listed profile takes it (its tests only tell profiles apart;
they never turn a product's own path away), and ``/beacon``, shared by all, falls back to the
built-in profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..conditions import Condition
from ..event import Event, split_path
from .model import GENERIC_PATH
from .profile import FALLBACK, Profile

# A request's path, method and User-Agent decide most of a beacon's profile, and the few
# agents a deployment sees repeat: what they decide is kept per (path, method, agent), so a
# beacon costs at most its shape tests. Clients choose their agent strings, hence the bounds.
_MAX_PLANS = 512
_MAX_CACHED_AGENT = 256


@dataclass(frozen=True, slots=True)
class Resolution:
    """The profile a beacon belongs to and the reason, as ``dry-run`` prints it."""

    profile: Profile
    reason: str


# A shape test (None: none to pass), a top-level key it needs, and the resolution it gives.
_Test = tuple[Callable[[Event], bool] | None, str | None, Resolution]
# A resolution decided without the payload, or the shape tests left, then the resolution
# when none holds (see Profiles._plan).
_Plan = Resolution | tuple[list[_Test], Resolution]


class Profiles:
    """Every configured profile, in precedence order, plus the built-in fallback of /beacon."""

    def __init__(self, profiles: Iterable[Profile] = ()) -> None:
        self.all = tuple(profiles)
        self.by_name = {p.name: p for p in self.all}
        self.posthog = next((p for p in self.all if p.config.source == "posthog"), None)
        beacons = [p for p in self.all if p.config.source == "beacon"]
        self._on_path: dict[str, list[Profile]] = {GENERIC_PATH: []}
        for profile in beacons:
            for path in profile.paths:
                self._on_path.setdefault(path, []).append(profile)
        self._recognisable = [p for p in beacons
                              if p.recognisable and GENERIC_PATH not in p.paths]
        self._routes = {
            path: frozenset({m for p in profiles for m in p.methods}
                            | ({"POST"} if path == GENERIC_PATH else set()))
            for path, profiles in self._on_path.items()}
        self._plans: dict[tuple[str, str, str | None], _Plan] = {}

    def __eq__(self, other: object) -> bool:
        # By what they say, not by identity: every backend holds the profiles, and a reload
        # compares backends to find the changed ones (and restart them). Where they came from
        # (``origin``, a line number) changes nothing.
        if not isinstance(other, Profiles):
            return NotImplemented
        return [(p.config, p.fallback) for p in self.all] == [
            (p.config, p.fallback) for p in other.all]

    def __hash__(self) -> int:
        return hash(tuple(p.name for p in self.all))

    def routes(self) -> Mapping[str, frozenset[str]]:
        """Each path to serve and the methods its profiles use (/beacon: POST at least)."""
        return self._routes

    def candidates(self, path: str) -> list[Profile]:
        """The profiles a beacon on ``path`` may belong to, listed ones first."""
        listed = self._on_path.get(path, [])
        return listed + self._recognisable if path == GENERIC_PATH else list(listed)

    def resolve(self, path: str, method: str, user_agent: str | None,
                payload: dict[str, Any]) -> Resolution:
        """The profile of one decoded beacon that arrived on route ``path``."""
        key = (path, method, user_agent)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(path, method, user_agent)
            if user_agent is None or len(user_agent) <= _MAX_CACHED_AGENT:
                if len(self._plans) >= _MAX_PLANS:
                    self._plans.clear()  # crude but bounded: agents are the clients' to choose
                self._plans[key] = plan
        if isinstance(plan, Resolution):  # nothing left for the payload to decide
            return plan
        tests, otherwise = plan
        probe = None
        for test, needed, resolution in tests:
            if test is None:
                return resolution
            if needed is not None and needed not in payload:
                continue  # the test cannot hold: not worth a call
            if probe is None:
                probe = Event(uuid="", received_at="", name="beacon", data=payload)
            if _holds(test, probe):
                return resolution
        return otherwise

    def _plan(self, path: str, method: str, user_agent: str | None) -> _Plan:
        """What is left to decide once path, method and User-Agent are known: the candidates
        whose method and User-Agent tests held, most specific first (a stable sort keeps the
        first declared ahead among equals), each with its shape test (None: it has none) and
        its ready-made Resolution; then what takes the beacon when no shape holds. The first
        candidate without a shape test ends the list, as nothing after it can win; when it is
        the first of all, the result is one Resolution: the payload is never looked at."""
        ranked: list[tuple[tuple[bool, bool, bool], Profile, list[str]]] = []
        for profile in self.candidates(path):
            if method not in profile.methods:
                continue
            on_path = path in profile.paths
            why = [f"path {path} is listed" if on_path else f"recognised on {path}"]
            if profile.user_agent is not None:
                if user_agent is None or not profile.user_agent.search(user_agent):
                    continue
                why.append(f"User-Agent matches {profile.user_agent.pattern!r}")
            if profile.shape is not None:
                why.append("payload shape matches")
            rank = (on_path, profile.user_agent is not None, profile.shape is not None)
            ranked.append((rank, profile, why))
        ranked.sort(key=lambda r: r[0], reverse=True)  # stable: declaration order among equals
        tests: list[_Test] = []
        for _, profile, why in ranked:
            shape = profile.config.match.shape
            tests.append((profile.shape, None if shape is None else _needed_key(shape),
                          Resolution(profile, "; ".join(why))))
            if profile.shape is None:
                break
        listed = self._on_path.get(path)
        if listed and path != GENERIC_PATH:
            otherwise = Resolution(listed[0], f"path {path} is listed; no profile's User-Agent "
                                              "or shape test held, so its first profile takes it")
        else:
            otherwise = Resolution(FALLBACK, f"no profile matched on {path}: the built-in beacon "
                                             "profile")
        if not tests:
            return otherwise
        if tests[0][0] is None:
            return tests[0][2]
        return tests, otherwise

    def for_route(self, path: str) -> list[Profile]:
        """The profiles listing ``path`` (what `check` shows), or the fallback for /beacon."""
        listed = self._on_path.get(path, [])
        return listed or ([FALLBACK] if path == GENERIC_PATH else [])


def _needed_key(condition: Condition) -> str | None:
    """A top-level key of the payload without which ``condition`` cannot hold, or None.

    A field test other than ``exists: false`` fails on a missing field (equals, in and matches
    never match the missing value), so it needs the field's first key; ``all`` needs what any
    of its parts needs; ``any``, ``not`` and ``source`` promise nothing here."""
    given = condition.model_fields_set
    if "all" in given:
        for part in condition.all or ():
            key = _needed_key(part)
            if key is not None:
                return key
        return None
    if condition.field is not None and not ("exists" in given and not condition.exists):
        return split_path(condition.field)[0]
    return None


def _holds(shape: Callable[[Event], bool], probe: Event) -> bool:
    try:
        return bool(shape(probe))
    except (TypeError, ValueError):  # a regex test on a non-string value, e.g.
        return False


EMPTY = Profiles()
"""No profiles: every /beacon beacon takes the built-in profile."""
