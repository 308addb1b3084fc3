"""``beacon-router replay``: the command line around ``Replay``.

Exit codes: 0 done (or already done); 2 bad config or arguments; 130 interrupted (run the same
command again to go on where it stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import orjson
import yaml

from ..config import Config
from ..config.loader import load
from ..errors import ConfigError
from ..spool import create_spool
from .checkpoint import Checkpoint, Selection
from .progress import ProgressLine
from .run import Replay


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="STORE",
                   help="the `type: store` backend to read (SQLite or PostgreSQL)")
    p.add_argument("--to", dest="target", required=True, metavar="BACKEND",
                   help="the backend to deliver to, through its own when:, filters and retry")
    p.add_argument("--since", help="only events received at or after this ISO 8601 time")
    p.add_argument("--until", help="only events received before this ISO 8601 time")
    p.add_argument("--where", metavar="COND",
                   help="a condition as in `when:`, YAML or JSON: '{field: version, "
                        "matches: \"^2\\\\.\"}'")
    p.add_argument("--dry-run", action="store_true",
                   help="count what would be sent; send nothing, keep no checkpoint")
    p.add_argument("--restart", action="store_true",
                   help="start from the beginning, not from the saved checkpoint")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where checkpoints are kept (default: the spool file's directory, "
                        "or ./data)")


def state_dir(config: Config) -> str:
    """Checkpoints live beside the spool file: the data directory ops already back up."""
    if config.spool.type == "sqlite" and config.spool.path:
        return os.path.dirname(os.path.abspath(config.spool.path))
    return os.path.abspath("data")


def parse_where(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not YAML or JSON: {exc}", key="--where") from None


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    selection = Selection(args.source, args.target, args.since, args.until,
                          parse_where(args.where))
    return asyncio.run(_run(config, selection, args))


async def _run(config: Config, selection: Selection, args: argparse.Namespace) -> int:
    progress = ProgressLine(sys.stderr)
    dead_letters = None if args.dry_run else create_spool(config.spool)
    replay = Replay(config, selection, state_dir=args.state_dir or state_dir(config),
                    dead_letters=dead_letters, dry_run=args.dry_run, restart=args.restart,
                    progress=progress)
    progress.start(replay.checkpoint)
    if replay.checkpoint.done:
        print(f"replay {selection.source} → {selection.target} already finished "
              f"({replay.path}); --restart to send it again", file=sys.stderr)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(replay.stop()))
    if dead_letters is not None:
        await dead_letters.open([])
    try:
        cp = await replay.run()
    finally:
        progress.finish()
        if dead_letters is not None:
            await dead_letters.close()
    _report(cp, replay, args.dry_run)
    return 130 if replay.stopped and not cp.done else 0


def _report(cp: Checkpoint, replay: Replay, dry_run: bool) -> None:
    summary = {"from": cp.selection.source, "to": cp.selection.target, "done": cp.done,
               "scanned": cp.scanned, "matched": cp.matched,
               "would_send" if dry_run else "delivered": cp.delivered,
               "dead_lettered": cp.dead_lettered, "skipped": cp.skipped}
    if not dry_run:
        summary["checkpoint"] = str(replay.path)
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    if not cp.done and not dry_run:
        print("interrupted: run the same command again to go on from the checkpoint",
              file=sys.stderr)
