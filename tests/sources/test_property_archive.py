"""Property: whatever the payload, a beacon the shipped config acknowledges with a 2xx is a row in
the archive — no silent dedup of distinct beacons (issue 12: GitLab's `uuid` collapsed them).

Each beacon is sent twice, as an installation sends the same beacon again the next day. The
payloads draw their keys from the fields products use as identities and event ids (`uuid`,
`installation_id`, `instance_id`, …) and their ids from a handful of values, so that many beacons
share an id; they go to /beacon and to product paths, with and without the products' User-Agent.
Opting out (`telemetry: false`, DNT) is the one documented way a 2xx stores nothing: the
strategy leaves it out.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import REPO, RouterProcess, free_port

IDS = ["8f1c5b7e-3d2a-4c6b-9e1f-2a7d4b6c8e90", "5f0b6c1e-8a3d-4f27-9b4e-7c2d1a0e6f38", "a", ""]
KEYS = ["uuid", "installation_id", "instance_id", "site_id", "distinct_id", "version",
        "product", "event_id", "timestamp", "hostname", "license_md5"]
ROUTES = [("/beacon", None), ("/beacon", "Operately/1.0"), ("/beacon", "GitLab/16.0"),
          ("/usage_data", "GitLab/16.0"), ("/ping", None), ("/api/event", None),
          ("/api/v1/usage", None), ("/ocs/v2.php/apps/survey_server/api/v1/survey", None)]

scalars = st.one_of(st.sampled_from(IDS), st.text(max_size=12), st.integers(-5, 5000),
                    st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["issues", "users", "x"]),
                                                 inner, max_size=3)), max_leaves=6)
# Each id-like key present about half the time, holding one of a few values: collisions abound.
ids = st.fixed_dictionaries({}, optional={k: st.sampled_from(IDS) for k in KEYS[:6]})
payloads = st.builds(lambda given, rest: {**rest, **given} or {"a": 1}, ids, st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.sampled_from(["counts", "a"])), values, max_size=5))


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    workdir = tmp_path_factory.mktemp("property")
    (workdir / "config").symlink_to(Path(REPO) / "config")
    proc = RouterProcess("config/router.yaml", free_port(), str(workdir),
                         env={"BEACON_HASH_KEY": "", "POSTHOG_API_KEY": "", "ADMIN_TOKEN": ""})
    proc.start()
    try:
        asyncio.run(proc.wait_ready())
        yield proc
    finally:
        proc.stop()


def post(url: str, body: bytes, agent: str | None) -> int:
    headers = {"Content-Type": "application/json", "User-Agent": agent or "test-client/1"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def archived(workdir: str) -> int:
    db = Path(workdir) / "data" / "beacons.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM beacons").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(beacons=st.lists(st.tuples(payloads, st.sampled_from(ROUTES)), min_size=1, max_size=8))
def test_every_acknowledged_beacon_is_archived(router, beacons):
    before = archived(router.workdir)
    acknowledged = 0
    for payload, (path, agent) in beacons:
        payload.pop("telemetry", None)
        for _ in range(2):  # the same beacon again, as on the next day: another event
            status = post(router.url + path, json.dumps(payload).encode(), agent)
            assert status < 500
            acknowledged += 200 <= status < 300
    deadline = time.monotonic() + 20
    while archived(router.workdir) < before + acknowledged and time.monotonic() < deadline:
        time.sleep(0.05)
    assert archived(router.workdir) == before + acknowledged
