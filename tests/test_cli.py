"""`beacon-router dry-run` and `migrate` as ops run them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from support import REPO

BEACON = {"installation_id": "2f1c7c1e-8a5b-4e8e-9d7a-3b1f0c2d4e5f", "version": "2.0.1",
          "platform": {"os": "linux"}, "counts": {"users": 37}, "hostname": "a.example.com"}


def run(args: list[str], cwd: Path, stdin: str | None = None, **env: str
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router.cli", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": REPO, **env})


def test_dry_run_shows_each_backends_exact_request_without_sending(tmp_path):
    (tmp_path / "config").symlink_to(Path(REPO) / "config")
    result = run(["dry-run", "--config", "config/router.yaml"], tmp_path, json.dumps(BEACON),
                 POSTHOG_API_KEY="phc_supersecret", POSTHOG_HOST="http://127.0.0.1:9",
                 BEACON_HASH_KEY="a-dry-run-hash-key-0123456789")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    event = report["pipeline"]["event"]["data"]
    assert "hostname" not in event and event["counts"]["users"] == "11-50"
    [posthog] = report["backends"]["posthog"]["requests"]
    assert posthog["url"] == "http://127.0.0.1:9/batch/"
    body = json.dumps(posthog["body"])
    assert "phc_supersecret" not in result.stdout and event["installation_id"] in body
    assert report["backends"]["archive"]["requests"]
    assert not (tmp_path / "data" / "beacons.db").exists(), "dry-run must not write the store"


def test_dry_run_says_which_filter_drops_the_beacon(tmp_path):
    (tmp_path / "config").symlink_to(Path(REPO) / "config")
    result = run(["dry-run", "--config", "config/router.yaml"], tmp_path,
                 json.dumps({**BEACON, "telemetry": False}),
                 BEACON_HASH_KEY="a-dry-run-hash-key-0123456789")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pipeline"] == {"dropped": "opt_out: opted_out"}


def test_dry_run_rejects_a_bad_beacon_with_exit_2(tmp_path):
    (tmp_path / "config").symlink_to(Path(REPO) / "config")
    result = run(["dry-run", "--config", "config/router.yaml"], tmp_path, "{not json",
                 BEACON_HASH_KEY="a-dry-run-hash-key-0123456789")
    assert result.returncode == 2 and "bad beacon" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_store_tables(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "backends:\n  archive: {type: store, url: 'sqlite:///store/beacons.db'}\n")
    result = run(["migrate", "--config", "r.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "archive: tables ready" in result.stdout
    tables = sqlite3.connect(tmp_path / "store" / "beacons.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert ("beacons",) in tables
