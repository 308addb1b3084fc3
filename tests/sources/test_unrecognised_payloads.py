"""A product's payload that reaches the generic beacon profile (posted to /beacon without the
product's User-Agent, so no source profile claims it) keeps its unknown fields as they are: the
shipped pipeline hashes the id fields such payloads carry (GitLab's ``uuid``, Nextcloud's
``instance_id``), so the raw ids still never reach a file under ``data/`` or the log."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from support import REPO, RouterProcess, free_port
from test_acceptance import FIXTURES, GITLAB_UUID, archived

NEXTCLOUD_ID = "9c4f1e0a7b2d5e8f3a6c9b1d4e7f0a2c5b8d1e4f7a0c3b6d9e2f5a8c1b4d7e0f"


async def test_ids_of_payloads_no_profile_claims_are_hashed_before_the_disk(tmp_path: Path):
    (tmp_path / "config").symlink_to(Path(REPO) / "config")
    proc = RouterProcess("config/router.yaml", free_port(), str(tmp_path),
                         env={"BEACON_HASH_KEY": "", "POSTHOG_API_KEY": ""})
    proc.start()
    try:
        await proc.wait_ready()
        async with aiohttp.ClientSession(skip_auto_headers=("User-Agent",)) as http:
            for name in ("gitlab.json", "nextcloud.json"):
                async with http.post(proc.url + "/beacon", data=(FIXTURES / name).read_bytes(),
                                     headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 202, await resp.text()
        rows = await archived(proc, 2)
    finally:
        proc.stop()

    assert [data["product"] for _, _, data in rows] == ["unknown", "unknown"]  # generic
    hashed = [data.get("uuid") or data.get("instance_id") for _, _, data in rows]
    assert all(len(h) == 64 and h not in (GITLAB_UUID, NEXTCLOUD_ID) for h in hashed), hashed
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    for path in [*files, tmp_path / "router.log"]:
        content = path.read_bytes()
        for raw in (GITLAB_UUID, NEXTCLOUD_ID):
            assert raw.encode() not in content, f"{raw!r} in {path.name}"
