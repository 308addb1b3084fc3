"""From a decoded request to durable events, for every ingest handler: the request context
filters may read (memory only), then the global pipeline and one durable spool write."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import hdrs, web
from multidict import istr

from ..event import Event, RequestContext
from ..filters import Pipeline
from ..tap import PIPELINE, TAP
from .state import ROUTER, Router

_DNT, _GPC = istr("DNT"), istr("Sec-GPC")  # istr: case-folded once, not on every lookup


async def make_durable(router: Router, source: str, events: Iterable[Event],
                       pipeline: Pipeline | None = None) -> int:
    """Run the global pipeline (or ``pipeline``: a source profile that opted out of it) on each
    event and append the survivors to the spool in one durable write; returns how many were
    kept. Raises Unavailable if the spool refuses.

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
    router.metrics.child(router.metrics.accepted, source).inc(len(kept))
    return len(kept)


def request_context(request: web.Request, router: Router | None = None,
                    token: str | None = None) -> RequestContext:
    """The request facts filters may use, and the source's ``token``; held in memory only."""
    headers = request.headers
    return RequestContext(headers.get(_DNT) == "1", headers.get(_GPC) == "1", None,
                          headers.get(hdrs.USER_AGENT), token,
                          lambda: client_ip(request, router))


def client_ip(request: web.Request, router: Router | None = None) -> str | None:
    """The client's address, read through ``limits.trusted_proxies``; memory only, never kept."""
    limits = (router or request.app[ROUTER]).rate_limits
    if not limits.trusted_proxies:  # the common case: no header to read
        return request.remote
    return limits.client_ip(request.remote, request.headers.get(hdrs.X_FORWARDED_FOR))
