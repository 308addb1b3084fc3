"""What a config makes of one beacon, without sending anything: ``beacon-router dry-run`` and
``beacon-router test`` print it.

The global pipeline, then per backend the delivery worker's own :class:`BackendRoute` (its
``when:`` and filters) and the backend's ``render``: the requests ``send`` would make.
"""

from __future__ import annotations

from typing import Any

from .config import Config, masked
from .delivery import BackendRoute
from .event import Event
from .filters import Pipeline

WHEN_SKIPPED = "its `when:` condition does not match"


def dry_run(config: Config, beacon: dict[str, Any] | Event) -> dict[str, Any]:
    """What the global pipeline makes of ``beacon`` and the exact requests of each backend.

    ``beacon`` may be an already built Event (``beacon-router test`` sets its uuid, time and
    request context so the output is stable); each backend's entry shows the event it receives.
    """
    if not isinstance(beacon, Event):
        beacon = Event.new(beacon, uuid=beacon.get("uuid"))
    event, dropped = Pipeline(config.pipeline).explain(beacon)
    if event is None:
        return {"pipeline": {"dropped": dropped}, "backends": {}}
    out: dict[str, Any] = {"pipeline": {"event": event.to_dict()}, "backends": {}}
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
