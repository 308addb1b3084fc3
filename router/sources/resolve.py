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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..event import Event
from .model import GENERIC_PATH
from .profile import FALLBACK, Profile


@dataclass(frozen=True, slots=True)
class Resolution:
    """The profile a beacon belongs to and the reason, as ``dry-run`` prints it."""

    profile: Profile
    reason: str


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
        probe = Event(uuid="", received_at="", name="beacon", data=payload)
        best: tuple[tuple[bool, bool, bool, bool], Profile, list[str]] | None = None
        for profile in self.candidates(path):
            on_path = path in profile.paths
            best_possible = (on_path, True, profile.user_agent is not None,
                             profile.shape is not None)
            if best is not None and best_possible <= best[0]:
                continue  # it could at most tie, and the first declared wins a tie: no tests
            why = [f"path {path} is listed" if on_path else f"recognised on {path}"]
            if method not in profile.methods:
                continue
            ua_hit = False
            if profile.user_agent is not None:
                if user_agent is None or not profile.user_agent.search(user_agent):
                    continue
                ua_hit = True
                why.append(f"User-Agent matches {profile.user_agent.pattern!r}")
            shape_hit = False
            if profile.shape is not None:
                if not _holds(profile, probe):
                    continue
                shape_hit = True
                why.append("payload shape matches")
            rank = (on_path, True, ua_hit, shape_hit)
            if best is None or rank > best[0]:  # strictly: the first declared wins a tie
                best = (rank, profile, why)
        if best is not None:
            return Resolution(best[1], "; ".join(best[2]))
        listed = self._on_path.get(path)
        if listed and path != GENERIC_PATH:
            return Resolution(listed[0], f"path {path} is listed; no profile's User-Agent or "
                                         "shape test held, so its first profile takes it")
        return Resolution(FALLBACK, f"no profile matched on {path}: the built-in beacon profile")

    def for_route(self, path: str) -> list[Profile]:
        """The profiles listing ``path`` (what `check` shows), or the fallback for /beacon."""
        listed = self._on_path.get(path, [])
        return listed or ([FALLBACK] if path == GENERIC_PATH else [])


def _holds(profile: Profile, probe: Event) -> bool:
    assert profile.shape is not None
    try:
        return bool(profile.shape(probe))
    except (TypeError, ValueError):  # a regex test on a non-string value, e.g.
        return False


EMPTY = Profiles()
"""No profiles: every /beacon beacon takes the built-in profile."""
