"""The Python limit on this machine: a bare aiohttp + orjson server that reads the body, parses
it and answers 202, on the same event loop the router uses (uvloop when installed).

Every router figure in the bench is reported as a ratio to this server's, measured in the same
run, so the machine's speed (and its other load) cancels out.

    python bench/baseline_server.py --port 8090
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    """Parse the body (one JSON parse, as the router must) and answer like the router does."""
    doc = orjson.loads(await request.read())
    accepted = len(doc) if isinstance(doc, list) else len(doc.get("batch", [doc]))
    return web.Response(
        body=orjson.dumps({"accepted": accepted}), status=202, content_type="application/json"
    )


async def serve(host: str, port: int) -> None:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/{path:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
