"""The ``beacon-router`` command: serve, check, dry-run.

Exit codes: 0 success; 1 runtime failure; 2 bad config or bad usage (with a message naming
file, line and key).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson
import yaml

from . import __version__
from .config import Config, load, masked
from .errors import ConfigError, InputError

DEFAULT_CONFIG = "config/router.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"beacon-router: config error:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beacon-router", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"beacon-router {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, run: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"the YAML config (default {DEFAULT_CONFIG})")
        p.set_defaults(run=run)
        return p

    p = command("serve", _serve, "Accept beacons over HTTP and deliver them to the backends.")
    p.add_argument("--listen", help="host:port, overriding server.listen")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="auto", choices=["auto", "json", "console"])

    p = command("check", _check, "Validate a config: exit 0 if valid, else 2 naming the key.")
    p.add_argument("--show", action="store_true",
                   help="print the effective config (after ${VAR} expansion), secrets masked")

    p = command("dry-run", _dry_run,
                "Print what each backend would receive for a beacon, without sending.")
    p.add_argument("beacon", nargs="?", help="a JSON beacon file (default: standard input)")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import logs
    from .app import create_app
    from .config import split_listen

    config = load(args.config)
    logs.configure(args.log_level, args.log_format)
    host, port = split_listen(args.listen) if args.listen else (config.server.host,
                                                                 config.server.port)
    loop = _new_loop()
    web.run_app(create_app(config), host=host, port=port, access_log=None, print=None,
                shutdown_timeout=config.server.shutdown_timeout, loop=loop)
    return 0


def _new_loop() -> Any:
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _check(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.show:
        sys.stdout.write(yaml.safe_dump(masked(dict(config.raw)), sort_keys=False))
        return 0
    enabled = ", ".join(config.enabled_backends) or "none"
    disabled = [n for n, b in config.backends.items() if not b.enabled]
    print(f"{args.config}: OK — {len(config.pipeline)} pipeline filters; backends: {enabled}"
          + (f" (disabled: {', '.join(disabled)})" if disabled else ""))
    return 0


def _dry_run(args: argparse.Namespace) -> int:
    from .ingest import Limits, decode_beacons

    config = load(args.config)
    raw = _read_input(args.beacon)
    try:
        beacons = decode_beacons(raw, "application/json", Limits.from_server(config.server))
    except InputError as exc:
        print(f"beacon-router: bad beacon: {exc.detail}", file=sys.stderr)
        return 2
    report = [dry_run(config, beacon) for beacon in beacons]
    sys.stdout.write(orjson.dumps(report[0] if len(report) == 1 else report,
                                  option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _read_input(path: str | None) -> bytes:
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()


def dry_run(config: Config, beacon: dict[str, Any]) -> dict[str, Any]:
    """What the global pipeline makes of ``beacon`` and the exact requests of each backend."""
    from .event import Event
    from .filters import Pipeline

    event, dropped = Pipeline(config.pipeline).explain(Event.new(beacon, uuid=beacon.get("uuid")))
    if event is None:
        return {"pipeline": {"dropped": dropped}, "backends": {}}
    out: dict[str, Any] = {"pipeline": {"event": event.to_dict()}, "backends": {}}
    for name, spec in config.backends.items():
        if not spec.enabled:
            out["backends"][name] = {"skipped": "disabled"}
            continue
        if spec.when is not None and not spec.when.compile()(event):
            out["backends"][name] = {"skipped": "its `when:` condition does not match"}
            continue
        copy = Event.from_json(event.to_json())
        kept, why = Pipeline(spec.filters).explain(copy)
        if kept is None:
            out["backends"][name] = {"dropped": why}
            continue
        requests = spec.build().render([kept])
        out["backends"][name] = {"requests": [
            {"method": r.method, "url": masked(r.url), "headers": masked(dict(r.headers)),
             "body": masked(r.body)} for r in requests]}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
