"""``beacon-router tap``: print the events a running router handles, as JSON lines.

It reads ``GET /admin/tap`` on the router's admin listener (from the config's ``admin:``), with
the config's admin token. Exit codes: 0 at ``--limit`` or Ctrl-C; 1 the router cannot be
reached or refused; 2 bad config or arguments (the admin API off, a bad ``--when``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import aiohttp
import orjson
import yaml

from ..config import Config, split_listen
from ..config.loader import load
from ..errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", "-b", metavar="NAME",
                   help="what this backend is handed, after its when: and filters (default: "
                        "what the global pipeline kept)")
    p.add_argument("--when", metavar="COND",
                   help="only events matching a condition as in `when:`, YAML or JSON")
    p.add_argument("--limit", "-n", type=int, metavar="N", help="stop after N events")
    p.add_argument("--url", help="the admin listener's base URL (default: from the config)")


def admin_url(config: Config) -> str:
    """Where the config's router serves the admin API (a wildcard host is reached locally)."""
    listen = config.admin.listen
    host, port = ((config.server.host, config.server.port) if listen == "same"
                  else split_listen(listen))
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config.admin.token is None:
        raise ConfigError("the admin API is off (admin.token is unset), so there is nothing "
                          "to tap", file=config.file, key="admin.token")
    params = {}
    if args.backend:
        params["backend"] = args.backend
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError("must be at least 1", key="--limit")
        params["limit"] = str(args.limit)
    if args.when is not None:
        try:
            params["when"] = orjson.dumps(yaml.safe_load(args.when)).decode()
        except (yaml.YAMLError, TypeError) as exc:
            raise ConfigError(f"not YAML or JSON: {exc}", key="--when") from None
    url = (args.url or admin_url(config)).rstrip("/") + "/admin/tap"
    token = config.admin.token.get_secret_value()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_stream(url, token, params))
    return 0


async def _stream(url: str, token: str, params: dict[str, str]) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
                url, params=params, headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status != 200:
                detail = (await resp.text())[:500]
                print(f"beacon-router: tap refused ({resp.status}): {detail}", file=sys.stderr)
                return 2 if resp.status in (400, 404) else 1
            async for raw in resp.content:
                line = raw.strip()
                if not line:
                    continue  # a keep-alive
                if line.startswith(b'{"tap":'):
                    dropped = orjson.loads(line)["tap"].get("dropped", 0)
                    print(f"beacon-router: tap fell behind; {dropped} events not shown",
                          file=sys.stderr)
                    continue
                sys.stdout.buffer.write(line + b"\n")
                sys.stdout.buffer.flush()
    except aiohttp.ClientError as exc:
        print(f"beacon-router: cannot tap {url}: {exc}", file=sys.stderr)
        return 1
    return 0
