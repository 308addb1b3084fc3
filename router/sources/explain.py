"""What ``beacon-router check`` and ``dry-run`` say about profiles: which profile each path
resolves to, and which profile a given beacon matched and why."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .model import GENERIC_PATH
from .profile import FALLBACK, Profile
from .resolve import Profiles

_VARIABLE = re.compile(r"\\\{(\w+)\\\}")


def route_of(profiles: Profiles, path: str) -> tuple[str, Mapping[str, str]] | None:
    """The served route a concrete path falls on (``/metrics/job/a`` → ``/metrics/job/{job}``)
    and its variables; None when no profile serves it."""
    for route in profiles.routes():
        pattern = _VARIABLE.sub(lambda m: f"(?P<{m[1]}>[^/]+)", re.escape(route))
        match = re.fullmatch(pattern, path)
        if match:
            return route, match.groupdict()
    return None


def _tests(profile: Profile) -> str:
    tests = []
    if profile.user_agent is not None:
        tests.append(f"User-Agent ~ {profile.user_agent.pattern}")
    if profile.shape is not None:
        tests.append("payload shape")
    answer = (f"answers {profile.answer_status}" if profile.config.source == "beacon"
              else "answers as PostHog does")
    product = profile.config.product_name if not profile.fallback else "the payload's or unknown"
    return f"{profile.name} (product {product}; {', '.join([*tests, answer])})"


def routes_table(profiles: Profiles) -> list[str]:
    """One line per served path: its methods and the profiles it resolves to, in precedence."""
    lines = []
    routes = profiles.routes()
    width = max(len(r) for r in routes)
    for route in sorted(routes, key=lambda r: (r != GENERIC_PATH, r)):
        methods = ",".join(sorted(routes[route]))
        listed = [p for p in profiles.all if route in p.paths and p.config.source == "beacon"]
        names = [_tests(p) for p in listed]
        if route == GENERIC_PATH:
            names += [f"recognised: {_tests(p)}" for p in profiles.candidates(route)
                      if p not in listed]
            names.append(f"else {_tests(FALLBACK)}")
        lines.append(f"  {route:<{width}}  {methods:<8} " + "\n  ".ljust(width + 14).join(names))
    if profiles.posthog is not None:
        lines.append(f"  {'PostHog capture paths':<{width}}  {'':<8} {_tests(profiles.posthog)}")
    return lines
