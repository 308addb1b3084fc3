"""From a decoded request to durable events, for every ingest handler: the request context
filters may read (memory only), then the global pipeline and one durable spool write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import hdrs, web
from multidict import istr

from ..event import Event, RequestContext
from ..filters import Pipeline
from ..tally import CounterTally
from ..tap import PIPELINE, TAP
from .state import ROUTER, Router

_DNT, _GPC = istr("DNT"), istr("Sec-GPC")  # istr: case-folded once, not on every lookup
_UNREAD: Any = object()  # request_context's agent when the caller has not read the header


async def make_durable(router: Router, source: str, events: Iterable[Event],
                       pipeline: Pipeline | None = None, accepted: CounterTally | None = None
                       ) -> int:
    """Run the global pipeline (or ``pipeline``: a source profile that opted out of it) on each
    event and append the survivors to the spool in one durable write; returns how many were
    kept. Raises Unavailable if the spool refuses. ``accepted`` is the source's series of
    ``router.metrics.accepted`` when the caller holds it (else it is looked up).

    A request that fails leaves nothing remembered (dedupe): its retry must not be dropped."""
    # (not `pipeline or …`: a Pipeline of no steps has len 0, so it is falsy)
    pipeline = pipeline if pipeline is not None else router.pipeline
    if not isinstance(events, list):
        events = list(events)
    try:
        if pipeline.batched:  # a filter's state is shared (Redis): one round trip per request
            kept = await pipeline.run(events)
        elif len(pipeline):
            kept = [e for e in map(pipeline, events) if e is not None]
        else:  # no steps (a profile's `pipeline: false`, or none configured): nothing to run
            kept = events
        if not kept:
            return 0
        assert router.spool is not None
        bodies = [e.to_json() for e in kept]
        await router.spool.append(bodies)
    except BaseException:
        for event in events:
            for undo in event.undo or ():
                undo()
        raise
    if TAP.active:  # someone runs `beacon-router tap`: show what is now durable
        TAP.publish(PIPELINE, bodies)
    if accepted is None:
        accepted = router.metrics.child(router.metrics.accepted, source)
    accepted.inc(len(kept))
    return len(kept)


def request_context(request: web.Request, router: Router | None = None,
                    token: str | None = None, agent: Any = _UNREAD) -> RequestContext:
    """The request facts filters may use, and the source's ``token``; held in memory only.
    ``agent``: the User-Agent header when the caller has already read it."""
    headers = request.headers
    if agent is _UNREAD:
        agent = headers.get(hdrs.USER_AGENT)
    return RequestContext(headers.get(_DNT) == "1", headers.get(_GPC) == "1", None,
                          agent, token, lambda: client_ip(request, router))


def client_ip(request: web.Request, router: Router | None = None) -> str | None:
    """The client's address, read through ``limits.trusted_proxies``; memory only, never kept."""
    limits = (router or request.app[ROUTER]).rate_limits
    if not limits.trusted_proxies:  # the common case: no header to read
        return request.remote
    return limits.client_ip(request.remote, request.headers.get(hdrs.X_FORWARDED_FOR))
