"""Where a replay stopped: a small JSON file, rewritten atomically after every batch.

One file per replay job: ``<dir>/replay-<from>-<to>-<digest>.json``, the digest taken over what
selects the events (from, to, since, until, where), so running the same command again goes on
where it stopped, and a different selection starts a job of its own.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..backends.store.archive import Position
from ..event import now_iso


@dataclass(frozen=True, slots=True)
class Selection:
    """What a replay reads and where it sends it."""

    source: str
    target: str
    since: str | None = None
    until: str | None = None
    where: Any = None  # the condition as given (a JSON-able mapping), or None

    def digest(self) -> str:
        raw = orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()[:12]


@dataclass(slots=True)
class Checkpoint:
    """A replay's progress: the last archive key finished and what became of the events."""

    selection: Selection
    after: Position = field(default_factory=Position)
    scanned: int = 0       # rows read from the archive
    matched: int = 0       # of those, the ones `--where` selected
    delivered: int = 0     # accepted by the target backend
    dead_lettered: int = 0  # refused for good: in the target's dead-letter queue
    done: bool = False
    started_at: str = field(default_factory=now_iso)
    updated_at: str = ""

    @property
    def skipped(self) -> int:
        """Selected, but left out by the target's `when:` or filters."""
        return self.matched - self.delivered - self.dead_lettered

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        d = {k: v for k, v in d.items() if k != "skipped"}
        return cls(**{**d, "selection": Selection(**d["selection"]),
                      "after": Position(**d["after"])})


def path_for(directory: str | Path, selection: Selection) -> Path:
    """The checkpoint file of ``selection`` under ``directory``."""
    name = f"replay-{selection.source}-{selection.target}-{selection.digest()}.json"
    return Path(directory) / name


def load(path: Path, selection: Selection) -> Checkpoint:
    """The saved checkpoint, or a fresh one if there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Checkpoint(selection)
    checkpoint = Checkpoint.from_dict(orjson.loads(raw))
    if checkpoint.selection != selection:  # a digest collision: never resume another job
        return Checkpoint(selection)
    return checkpoint


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint so that a crash leaves the old file or the new one, never half."""
    checkpoint.updated_at = now_iso()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".replay-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(checkpoint.to_dict(), option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
