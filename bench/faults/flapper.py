"""A flapping backend on loopback: a webhook endpoint and PostHog's ``/batch/`` that switch
between answering 200, 500, 503, 429 + Retry-After, and hanging past the router's timeout.

It records, per path, every event uuid it answered 200 for: what counts as delivered.
"""

from __future__ import annotations

import asyncio
import gzip
import random
from collections import Counter

import orjson
from aiohttp import web

MODES = ("ok", "ok", "ok", "500", "503", "429", "hang")


class Flapper:
    """Each request gets the next answer of a shuffled round of ``MODES``, so any seven requests
    in a row meet every kind of failure, however the router's retries space them out;
    ``flap()`` shuffles a new round. While ``healthy`` (a drain), every answer is 200."""

    def __init__(self, port: int, hang: float = 5.0, seed: int | None = None) -> None:
        self.port, self.hang = port, hang
        self.random = random.Random(seed)
        self.round: list[str] = []
        self.healthy = False
        self.delivered: dict[str, Counter[str]] = {"/hook": Counter(), "/batch/": Counter()}
        self.answers: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None

    def flap(self) -> None:
        self.round = self.random.sample(MODES, len(MODES))

    def next_mode(self) -> str:
        if self.healthy:
            return "ok"
        if not self.round:
            self.flap()
        return self.round.pop()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        mode = self.next_mode()
        self.answers[mode] += 1
        if mode == "hang":
            await asyncio.sleep(self.hang)  # the router's timeout fires first: it retries
            return web.Response(status=504)
        if mode in ("500", "503"):
            return web.json_response({"error": "flapping"}, status=int(mode))
        if mode == "429":
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": "1"})
        if raw[:2] == b"\x1f\x8b":  # (aiohttp already inflates a declared Content-Encoding)
            raw = gzip.decompress(raw)
        body = orjson.loads(raw)
        events = body["events"] if request.path == "/hook" else body["batch"]
        self.delivered[request.path].update(e["uuid"] for e in events)
        if request.path == "/hook":
            return web.json_response({"ok": True})
        return web.json_response({"status": 1})

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", self.handle)
        app.router.add_post("/batch/", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
