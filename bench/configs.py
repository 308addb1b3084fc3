"""Router configs for the bench, derived from the shipped ``config/router.yaml``.

Each is written as a YAML file into the bench's work directory, with every path in it absolute
(spool, store, schema) and every backend pointed at the local stand-in, so that what is measured
is the embedded default, not a tuned copy.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "router.yaml"
SCHEMA = REPO / "config" / "schemas" / "beacon-v1.json"

# The environment the router runs with: posthog enabled (its key set), hashing keyed.
HASH_KEY = "bench-only-hash-key-0123456789abcdef"
POSTHOG_API_KEY = "phc_bench"


def router_env(upstream_port: int) -> dict[str, str]:
    return {
        "BEACON_HASH_KEY": HASH_KEY,
        "POSTHOG_API_KEY": POSTHOG_API_KEY,
        "POSTHOG_HOST": f"http://127.0.0.1:{upstream_port}",
    }


def shipped() -> dict[str, Any]:
    """config/router.yaml as written (``${VAR}`` left for the router to expand)."""
    return dict(yaml.safe_load(DEFAULT_CONFIG.read_text()))


def _absolute(doc: dict[str, Any], data: Path) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["spool"]["path"] = str(data / "spool.db")
    for step in doc.get("pipeline", []):
        if step.get("type") == "validate":
            step["schema"] = str(SCHEMA)
    for backend in doc.get("backends", {}).values():
        if backend.get("type") == "store":
            backend["url"] = f"sqlite:///{data / 'beacons.db'}"
    return doc


def webhook(upstream_port: int) -> dict[str, Any]:
    """A webhook backend (default batch and retry settings) posting to the stand-in."""
    return {"type": "webhook", "url": f"http://127.0.0.1:{upstream_port}/webhook"}


def default(data: Path, upstream_port: int, *, store: bool = True) -> dict[str, Any]:
    """Scenario 1's config: the shipped one (store ``archive``; ``posthog`` stays off, as it
    does without an API key) plus a webhook backend ``hooks``; ``store=False`` leaves the store
    out (a local file cannot be "down")."""
    doc = _absolute(shipped(), data)
    doc["backends"].pop("posthog")
    if not store:
        doc["backends"].pop("archive")
    doc["backends"]["hooks"] = webhook(upstream_port)
    return doc


def with_posthog(data: Path) -> dict[str, Any]:
    """The shipped config as ops who use PostHog run it: store ``archive`` + ``posthog`` (its
    key set by ``router_env``), for the comparison with the nginx + Lua peer."""
    return _absolute(shipped(), data)


def pipeline_only(data: Path, upstream_port: int, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped server and spool, ``steps`` as the pipeline, and only the webhook backend."""
    doc = _absolute(shipped(), data)
    doc["pipeline"] = steps
    doc["backends"] = {"hooks": webhook(upstream_port)}
    return _absolute(doc, data)


def privacy_steps() -> list[dict[str, Any]]:
    """The issue's full privacy pipeline: validate + hash + bucket + drop + dedupe."""
    return [
        {"type": "validate", "schema": str(SCHEMA), "on_invalid": "drop"},
        {"type": "hash", "fields": ["installation_id"], "key": "${BEACON_HASH_KEY}"},
        {
            "type": "bucket",
            "fields": ["counts.users", "counts.projects", "counts.goals"],
            "edges": [10, 50, 200, 1000],
        },
        {"type": "drop", "fields": ["hostname", "admin_email", "email", "ip", "site_url"]},
        {"type": "dedupe", "fields": ["installation_id"], "window": "24h"},
    ]


def write(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
