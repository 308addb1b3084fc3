"""A local PostHog (and webhook) stand-in: counts what it receives, and can be slow or down.

The router's posthog and webhook backends and the nginx+Lua peer all send here. It answers
PostHog's ``200 {"status": 1}`` after an optional delay, and counts requests, events (the items of
a ``batch`` or ``events`` array, else 1) and distinct event uuids per path, so the bench can compare
what a sender acknowledged with what actually arrived.

A second port takes control requests, and keeps answering while the main port is down:

- ``GET /stats``: ``{"paths": {path: {"requests", "events", "unique"}}, "down": bool, ...}``
- ``POST /reset``: counters to zero
- ``POST /delay?ms=50``: answer every request that much later
- ``POST /down`` / ``POST /up``: stop listening, and drop requests on open connections, / back
- ``POST /outage?after=10&seconds=10``: go down ``after`` seconds from now for ``seconds``

    python bench/upstream.py --port 8091 --control-port 8092
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
from dataclasses import dataclass, field

import orjson
from aiohttp import web

STAND_IN = web.AppKey("stand_in", "StandIn")


class StandIn:
    """The counters and the switches, shared by the main and the control app."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.delay = 0.0
        self.down = False
        self.paths: dict[str, PathCounts] = {}
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.outage: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[STAND_IN] = self
        app.router.add_post("/{path:.*}", receive)
        self.runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self.runner.setup()
        await self.go_up()

    async def go_up(self) -> None:
        assert self.runner is not None
        self.down = False
        if self.site is None:
            self.site = web.TCPSite(
                self.runner, self.host, self.port, backlog=1024, reuse_address=True
            )
            await self.site.start()

    async def go_down(self) -> None:
        """Refuse new connections; requests on open keep-alive connections are cut off."""
        self.down = True
        if self.site is not None:
            await self.site.stop()
            self.site = None

    async def down_for(self, after: float, seconds: float) -> None:
        await asyncio.sleep(after)
        await self.go_down()
        await asyncio.sleep(seconds)
        await self.go_up()

    def count(self, path: str, body: bytes) -> None:
        counts = self.paths.get(path)
        if counts is None:
            counts = self.paths[path] = PathCounts()
        counts.requests += 1
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            counts.events += 1
            return
        # PostHog /batch/ and capture v1 send "batch", the webhook "events"; /capture/ one event.
        items = (doc.get("batch") or doc.get("events")) if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            items = [doc]
        for item in items:
            if not isinstance(item, dict) or item.get("event") == "$groupidentify":
                continue
            counts.events += 1
            uuid = item.get("uuid")
            if isinstance(uuid, str):
                counts.uuids.add(uuid)

    def stats(self) -> dict[str, object]:
        return {
            "paths": {path: c.as_dict() for path, c in self.paths.items()},
            "requests": sum(c.requests for c in self.paths.values()),
            "events": sum(c.events for c in self.paths.values()),
            "down": self.down,
            "delay_ms": self.delay * 1000,
        }

    def reset(self) -> None:
        self.paths.clear()


@dataclass
class PathCounts:
    """What arrived on one path: requests, events, and the distinct event uuids among them."""

    requests: int = 0
    events: int = 0
    uuids: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "events": self.events, "unique": len(self.uuids)}


async def receive(request: web.Request) -> web.StreamResponse:
    stand_in = request.app[STAND_IN]
    if stand_in.down:
        _cut(request)
        raise web.HTTPServiceUnavailable()  # not sent: the connection is already closed
    body = await request.read()
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    if stand_in.delay:
        await asyncio.sleep(stand_in.delay)
    if stand_in.down:  # went down while this request waited: it is lost, as on a real outage
        _cut(request)
        raise web.HTTPServiceUnavailable()
    stand_in.count(request.path, body)
    return web.Response(body=b'{"status": 1}', content_type="application/json")


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def control_app(stand_in: StandIn) -> web.Application:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(stand_in.stats(), dumps=lambda o: orjson.dumps(o).decode())

    async def reset(request: web.Request) -> web.Response:
        stand_in.reset()
        return await stats(request)

    async def delay(request: web.Request) -> web.Response:
        stand_in.delay = float(request.query.get("ms", "0")) / 1000
        return await stats(request)

    async def down(request: web.Request) -> web.Response:
        await stand_in.go_down()
        return await stats(request)

    async def up(request: web.Request) -> web.Response:
        await stand_in.go_up()
        return await stats(request)

    async def outage(request: web.Request) -> web.Response:
        after = float(request.query.get("after", "0"))
        seconds = float(request.query["seconds"])
        stand_in.outage = asyncio.create_task(stand_in.down_for(after, seconds))
        return await stats(request)

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/delay", delay)
    app.router.add_post("/down", down)
    app.router.add_post("/up", up)
    app.router.add_post("/outage", outage)
    return app


async def serve(host: str, port: int, control_port: int, start_down: bool) -> None:
    stand_in = StandIn(host, port)
    await stand_in.start()
    if start_down:
        await stand_in.go_down()
    runner = web.AppRunner(control_app(stand_in), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, control_port).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--down", action="store_true", help="start with the main port down")
    args = parser.parse_args()
    main_coro = serve(args.host, args.port, args.control_port, args.down)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main_coro)


if __name__ == "__main__":
    main()
