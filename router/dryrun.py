"""What a config makes of one beacon, without sending anything: ``beacon-router dry-run`` and
``beacon-router test`` print it.

The global pipeline, then per backend the delivery worker's own :class:`BackendRoute` (its
``when:`` and filters) and the backend's ``render``: the requests ``send`` would make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

from .config import Config, masked
from .delivery import BackendRoute
from .event import Event
from .filters import Pipeline
from .sources import RequestFacts
from .sources.explain import route_of

WHEN_SKIPPED = "its `when:` condition does not match"


def dry_run(config: Config, beacon: dict[str, Any] | Event, *, path: str = "/beacon",
            headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Which source profile takes ``beacon`` posted to ``path`` and why, what the global
    pipeline makes of it, and the exact requests of each backend.

    ``beacon`` may be an already built Event (``beacon-router test`` sets its uuid, time and
    request context so the output is stable); each backend's entry shows the event it receives.
    """
    found: dict[str, Any] = {}
    if not isinstance(beacon, Event):
        beacon, found = profiled(config, beacon, path, headers or {})
    event, dropped = Pipeline(config.pipeline).explain(beacon)
    if event is None:
        return {**found, "pipeline": {"dropped": dropped}, "backends": {}}
    out: dict[str, Any] = {**found, "pipeline": {"event": event.to_dict()}, "backends": {}}
    for name, spec in config.backends.items():
        if not spec.enabled:
            out["backends"][name] = {"skipped": "disabled"}
            continue
        route = BackendRoute(spec)
        copy = Event.from_json(event.to_json())  # each backend's filters start from the same
        if not route.matches(copy):
            out["backends"][name] = {"skipped": WHEN_SKIPPED}
            continue
        kept, why = route.explain(copy)
        if kept is None:
            out["backends"][name] = {"dropped": why}
            continue
        requests = spec.build().render([kept])
        out["backends"][name] = {"event": kept.to_dict(), "requests": [
            {"method": r.method, "url": masked(r.url), "headers": masked(dict(r.headers)),
             "body": masked(r.body)} for r in requests]}
    return out


def profiled(config: Config, beacon: dict[str, Any], path: str, headers: Mapping[str, str]
             ) -> tuple[Event, dict[str, Any]]:
    """The beacon as its source profile maps it, and ``{"profile": {name, product, reason,
    answer}}``: which profile matched and why, as the router would decide it on ``path``."""
    served = route_of(config.profiles, path)
    if served is None:
        return Event.new(beacon), {"profile": {"error": f"no profile serves {path}: the router "
                                                        "would answer 404"}}
    route, params = served
    found = config.profiles.resolve(route, "POST", headers.get("User-Agent"), beacon)
    profile = found.profile
    uuid = profile.event_uuid(beacon)
    profile.map(beacon, RequestFacts(headers=CIMultiDict(headers), path_params=params))
    status, body = profile.answer(1)
    return Event.new(beacon, uuid=uuid, profile=profile.name), {"profile": {
        "name": profile.name, "product": beacon.get("product"), "reason": found.reason,
        "answer": {"status": status, "body": body}}}
