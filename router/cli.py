"""The ``beacon-router`` command: serve, reload, check, dry-run, ….

The config is ``--config FILE``, else ``$BEACON_ROUTER_CONFIG``, else config/router.yaml.
``status``, ``dlq list|show`` and ``stats`` print JSON for scripts with ``--output json``.

Exit codes: 0 success; 1 runtime failure; 2 bad config or bad usage (with a message naming
file, line and key).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
import yaml
from multidict import CIMultiDict

from . import __version__, logs
from .config import Config, masked, split_listen
from .config.loader import load
from .configtest.command import main as run_tests
from .dryrun import dry_run
from .errors import ConfigError, InputError, RouterError, StoreUnavailable
from .ingest import Limits, decode_beacons
from .replay import command as replay_command
from .serve import delivery_process, reload_verdict
from .serve.server import serve
from .serve.supervisor import Supervisor
from .sources.explain import routes_table
from .spool.shardset import admin_spool  # every worker's file under serve --workers
from .stats.summary import render, summary_report
from .tap import command as tap_command
from .web.state import WorkerSlot

DEFAULT_CONFIG = "config/router.yaml"
CONFIG_ENV = "BEACON_ROUTER_CONFIG"  # the config when --config is not given
DEFAULT_DELIVERY = "process"  # serve --delivery: where delivery runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    if args.command != "serve":  # serve configures its own; the rest log warnings to stderr
        logs.configure("warning", "auto")
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"beacon-router: config error:\n{exc}", file=sys.stderr)
        return 2
    except RouterError as exc:  # e.g. the spool (Redis) is unreachable for `dlq` / `status`
        print(f"beacon-router: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beacon-router", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"beacon-router {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, run: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", "-c", default=os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG,
                       metavar="FILE",
                       help=f"the YAML config (default ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
        p.set_defaults(run=run)
        return p

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("--output", "-o", choices=["text", "json"], default="text",
                       help="json: one JSON document on stdout, for scripts")

    p = command("serve", _serve, "Accept beacons over HTTP and deliver them to the backends.")
    p.add_argument("--listen", help="host:port, overriding server.listen")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="auto", choices=["auto", "json", "console"])
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes sharing the port, each with its own spool file "
                        "(overrides server.workers; see docs/deploy.md)")
    p.add_argument("--delivery", choices=["process", "inline"], default=DEFAULT_DELIVERY,
                   help="process: delivery runs in its own process beside the ingest "
                        "workers; inline: in each worker's process "
                        f"(default {DEFAULT_DELIVERY}; see docs/deploy.md)")

    p = command("check", _check, "Validate a config: exit 0 if valid, else 2 naming the key.")
    p.add_argument("--show", action="store_true",
                   help="print the effective config (after ${VAR} expansion), secrets masked")

    p = command("dry-run", _dry_run,
                "Print what each backend would receive for a beacon, without sending.")
    p.add_argument("beacon", nargs="?", help="a beacon file (default: standard input)")
    p.add_argument("--path", default="/beacon", help="the path it is posted to (default /beacon)")
    p.add_argument("--user-agent", "-A", help="the client's User-Agent header")
    p.add_argument("--content-type", default="application/json", help="its Content-Type")
    p.add_argument("--header", "-H", action="append", default=[], metavar="NAME: VALUE",
                   help="another request header a profile reads (repeatable)")

    p = command("test", _test, "Run the config's tests (its tests: section, FILE.tests.yaml, "
                               "or --tests) without sending: exit 0 passed, 1 failed, 2 invalid.")
    p.add_argument("--tests", "-t", action="append", default=[], metavar="FILE",
                   help="a tests file to run instead of the config's own (repeatable)")

    p = command("dlq", _dlq, "Inspect, replay or purge a backend's dead-letter queue.")
    p.add_argument("action", choices=["list", "show", "replay", "purge"])
    p.add_argument("--backend", "-b", required=True, help="the backend's name in the config")
    p.add_argument("--since", help="only entries that failed at or after this ISO 8601 time")
    p.add_argument("--id", type=int, action="append", dest="ids", metavar="ID",
                   help="only this entry (repeatable); see `dlq list`")
    p.add_argument("--limit", type=int, default=50, help="entries shown by list/show")
    output(p)

    p = command("replay", _replay, "Backfill a backend from a store backend's archive, "
                                   "through its own filters, batching and retry; resumable.")
    replay_command.add_arguments(p)

    p = command("tap", _tap, "Print the events a running router handles, as JSON lines "
                             "(needs the admin API).")
    tap_command.add_arguments(p)

    p = sub.add_parser("reload", help=reload_verdict.HELP, description=reload_verdict.HELP)
    reload_verdict.add_arguments(p)
    p.set_defaults(run=reload_verdict.run)

    output(command("status", _status, "Show each backend's queue, dead letters and health."))
    command("migrate", _migrate, "Create the tables of every store backend, then exit.")
    p = command("stats", _stats, "Print the installed base (active, new, churned, breakdowns).")
    p.add_argument("--days", type=int, default=30, help="the last N days, today included")
    output(p)
    return parser


def _serve(args: argparse.Namespace) -> int:
    config = load(args.config)
    logs.configure(args.log_level, args.log_format)
    host, port = split_listen(args.listen) if args.listen else (config.server.host,
                                                                 config.server.port)
    workers = config.server.workers if args.workers is None else args.workers
    if workers < 1:
        print("beacon-router: --workers must be at least 1", file=sys.stderr)
        return 2
    separate = args.delivery == "process"
    if workers == 1 and not separate:
        return _serve_worker(config, host, port)
    supervisor = Supervisor(config, args.config, workers,
                            lambda cfg, slot: _serve_worker(cfg, host, port, slot),
                            host=host, port=port,
                            delivery_target=_deliver if separate else None)
    try:
        return supervisor.run()
    except OSError as exc:  # the port is taken by a process that does not share it
        print(f"beacon-router: cannot serve: {exc}", file=sys.stderr)
        return 1


def _serve_worker(config: Config, host: str, port: int, slot: WorkerSlot | None = None
                  ) -> int:
    """Serve in this process (one worker of several when ``slot`` is given); the exit code."""
    try:
        _run(serve(config, host, port, worker=slot))
    except (OSError, RouterError) as exc:  # the port is taken, the spool cannot open, …
        print(f"beacon-router: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _deliver(config: Config, slot: WorkerSlot) -> int:
    """The delivery process of ``serve --delivery process``; the exit code."""
    try:
        return delivery_process.run(config, slot, _run)
    except (OSError, RouterError) as exc:  # a spool file that cannot open, …
        print(f"beacon-router: cannot deliver: {exc}", file=sys.stderr)
        return 1


def _run(main: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (faster), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _check(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.show:
        sys.stdout.write(yaml.safe_dump(masked(dict(config.raw)), sort_keys=False))
        return 0
    enabled = ", ".join(config.enabled_backends) or "none"
    disabled = [n for n, b in config.backends.items() if not b.enabled]
    print(f"{args.config}: OK — {len(config.pipeline)} pipeline filters; backends: {enabled}"
          + (f" (disabled: {', '.join(disabled)})" if disabled else ""))
    print("paths → source profiles, in order of precedence (docs/sources.md):")
    print("\n".join(routes_table(config.profiles)))
    return 0


def _test(args: argparse.Namespace) -> int:
    return run_tests(args.config, args.tests)


def _dry_run(args: argparse.Namespace) -> int:
    config = load(args.config)
    raw = _read_input(args.beacon)
    try:
        beacons = decode_beacons(raw, args.content_type, Limits.from_server(config.server))
    except InputError as exc:
        print(f"beacon-router: bad beacon: {exc.detail}", file=sys.stderr)
        return 2
    headers: CIMultiDict[str] = CIMultiDict()
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    if args.user_agent:
        headers["User-Agent"] = args.user_agent
    report = [dry_run(config, beacon, path=args.path, headers=headers) for beacon in beacons]
    sys.stdout.write(orjson.dumps(report[0] if len(report) == 1 else report,
                                  option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _dlq(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def run() -> int:
        spool = admin_spool(config.spool)
        await spool.open([])
        try:
            if args.action in ("list", "show"):
                entries = await spool.dead_letters(args.backend, args.limit, args.since)
                if args.ids:
                    entries = [e for e in entries if e.id in set(args.ids)]
                if args.output == "json":
                    _print_json([_dead_letter(e, with_event=args.action == "show")
                                 for e in entries])
                    return 0
                for e in entries:
                    if args.action == "list":
                        print(f"{e.id}\t{e.failed_at}\tattempts={e.attempts}\t{e.reason}")
                    else:
                        print(orjson.dumps(_dead_letter(e, with_event=True),
                                           option=orjson.OPT_INDENT_2).decode())
                if not entries:
                    print(f"no dead letters for {args.backend}", file=sys.stderr)
                return 0
            if args.action == "replay":
                if args.backend not in config.enabled_backends:
                    print(f"beacon-router: {args.backend} is not an enabled backend in "
                          f"{args.config}; nothing would deliver a replay", file=sys.stderr)
                    return 2
                moved = await spool.replay(args.backend, args.ids, args.since)
                print(f"replayed {moved} events for {args.backend}")
                return 0
            release = args.backend not in config.backends and not args.ids and not args.since
            purged = await spool.purge(args.backend, args.ids, args.since,
                                       release_queue=release)
            print(f"purged {purged} dead letters of {args.backend}"
                  + ("; released its queue (no longer configured)" if release else ""))
            return 0
        finally:
            await spool.close()

    return int(_run(run()))


def _replay(args: argparse.Namespace) -> int:
    return replay_command.run(args)


def _tap(args: argparse.Namespace) -> int:
    return tap_command.run(args)


def _status(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def run() -> dict[str, Any]:
        spool = admin_spool(config.spool)
        await spool.open([])
        try:
            queues, dead = await spool.queues(), await spool.dead_letter_counts()
        finally:
            await spool.close()
        health = await _fetch_health(config)
        names = sorted(set(config.backends) | set(queues) | set(dead))
        return {name: {
            "configured": name in config.backends,
            "enabled": name in config.enabled_backends,
            "queued": queues.get(name, 0), "dead_letters": dead.get(name, 0),
            **({"health": health[name]} if name in health else {}),
        } for name in names}

    report = _run(run())
    if args.output == "json":
        _print_json({"backends": report})
        return 0
    width = max([len(n) for n in report] + [7])
    print(f"{'backend':<{width}}  {'queued':>8}  {'dead':>6}  state")
    for name, r in report.items():
        state = ("not configured" if not r["configured"] else "disabled" if not r["enabled"]
                 else ("healthy" if r["health"]["healthy"] else
                       f"unhealthy: {r['health']['last_error']}") if "health" in r
                 else "router not reachable")
        print(f"{name:<{width}}  {r['queued']:>8}  {r['dead_letters']:>6}  {state}")
    return 0


async def _fetch_health(config: Config) -> dict[str, Any]:
    """Backend health from a running router's /readyz, if one answers on server.listen."""
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{host}:{config.server.port}/readyz"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http, \
                http.get(url) as resp:
            return dict((await resp.json()).get("backends", {}))
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return {}


def _migrate(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def run() -> int:
        for name, spec in config.backends.items():
            if not spec.cls.has_tables:
                continue
            backend = spec.build()
            try:
                await backend.migrate()
                print(f"{name}: tables ready")
            except RouterError as exc:
                print(f"beacon-router: {name}: {exc}", file=sys.stderr)
                return 1
            finally:
                await backend.aclose()
        return 0

    return int(_run(run()))


def _dead_letter(entry: Any, *, with_event: bool) -> dict[str, Any]:
    """One dead letter as ``dlq list|show`` prints it in JSON (show adds the event)."""
    out = {"id": entry.id, "failed_at": entry.failed_at, "attempts": entry.attempts,
           "reason": entry.reason}
    if with_event:
        out["event"] = orjson.loads(entry.body)
    return out


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _stats(args: argparse.Namespace) -> int:
    config = load(args.config)
    if not 1 <= args.days <= 800:
        print("beacon-router: --days is between 1 and 800", file=sys.stderr)
        return 2
    try:
        found = _run(summary_report(config, args.days))
    except StoreUnavailable as exc:
        print(f"beacon-router: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        _print_json({"store": found[1], **found[0]} if found else {"store": None})
    elif found is None:
        print("no backend of type store: nothing to count")
    else:
        sys.stdout.write(render(*found))
    return 0


def _read_input(path: str | None) -> bytes:
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()


if __name__ == "__main__":
    raise SystemExit(main())
