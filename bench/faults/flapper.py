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
    """``mode`` is what the next request gets; ``flap()`` picks another one at random."""

    def __init__(self, port: int, hang: float = 5.0, seed: int | None = None) -> None:
        self.port, self.hang = port, hang
        self.mode = "ok"
        self.random = random.Random(seed)
        self.delivered: dict[str, Counter[str]] = {"/hook": Counter(), "/batch/": Counter()}
        self.answers: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None

    def flap(self) -> str:
        self.mode = self.random.choice(MODES)
        return self.mode

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        mode = self.mode
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
