"""docs/operations.md's hash key rotation, run as written: the dual-hash pipeline from the page
feeds a real SQLite store, and the page's SQL then gives old rows the new hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
from pathlib import Path

from support import REPO

from router.config.loader import loads
from router.event import Event
from router.filters import Pipeline

OLD_KEY, NEW_KEY = "the-old-hash-key-0123456789abcdef", "the-new-hash-key-0123456789abcdef"
RUNBOOK = (Path(REPO) / "docs" / "operations.md").read_text(encoding="utf-8")
ROTATION = RUNBOOK[RUNBOOK.index("### Rotating the `hash` key") :]


def block(language: str) -> str:
    """The first fenced block of ``language`` in the rotation section."""
    match = re.search(rf"```{language}\n(.*?)```", ROTATION, re.DOTALL)
    assert match, f"no {language} block in the rotation section"
    return match[1]


def h(key: str, installation_id: str) -> str:
    return hmac.new(key.encode(), installation_id.encode(), hashlib.sha256).hexdigest()


async def store(config_text: str, env: dict[str, str], db: Path, *ids: str) -> None:
    """Run beacons through the config's pipeline and its store backend, as delivery would."""
    backends = f'backends:\n  archive: {{type: store, url: "sqlite:///{db}"}}\n'
    config = loads(config_text + backends, file="router.yaml", env=env)
    pipeline = Pipeline(config.pipeline)
    backend = config.backends["archive"].build()
    try:
        events = [pipeline(Event.new({"installation_id": i, "version": "1.4.2"})) for i in ids]
        assert (await backend.send(events)).ok
    finally:
        await backend.aclose()


async def test_the_runbooks_dual_hash_period_maps_old_hashes_to_new_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the pipeline names its schema relative to the repository
    db = tmp_path / "beacons.db"
    before = "pipeline:\n  - {type: hash, fields: [installation_id], key: '${BEACON_HASH_KEY}'}\n"
    await store(before, {"BEACON_HASH_KEY": OLD_KEY}, db, "inst-1", "inst-2")

    dual = block("yaml")
    assert "previous_installation_id" in dual
    await store(
        dual, {"BEACON_HASH_KEY_PREVIOUS": OLD_KEY, "BEACON_HASH_KEY": NEW_KEY}, db, "inst-1"
    )  # inst-2 does not report during the period
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM beacons").fetchall()
        assert not any("inst-" in data for (data,) in rows), "a raw id reached the store"
        conn.executescript(block("sql"))
        ids = sorted(r[0] for r in conn.execute("SELECT distinct_id FROM beacons"))

    assert ids == sorted([h(NEW_KEY, "inst-1"), h(NEW_KEY, "inst-1"), h(OLD_KEY, "inst-2")])
