"""The optional extras: without asyncpg and redis the shipped config serves, and a config that
needs one is refused by ``beacon-router check`` naming the extra to install.

The packages are installed here (the suite needs them), so each test runs the router in a
subprocess whose import system refuses them, as an install without the extras would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import aiohttp
import pytest
from support import REPO, RouterProcess, free_port

BLOCKER = '''\
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    """As if the optional extras were not installed."""

    BLOCKED = {"asyncpg", "redis", "hiredis"}

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
'''


@pytest.fixture
def without_extras(tmp_path) -> dict[str, str]:
    """The environment of a Python whose imports of asyncpg, redis and hiredis fail."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": f"{site}{os.pathsep}{REPO}"}


def check(tmp_path, config: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "router.yaml").write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "router", "check", "--config", "router.yaml"],
        cwd=tmp_path, env={"PATH": os.environ["PATH"], **env},
        capture_output=True, text=True, timeout=60)


def test_the_blocker_really_blocks(without_extras, tmp_path):
    done = subprocess.run([sys.executable, "-c", "import redis.asyncio"], env=without_extras,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "No module named 'redis" in done.stderr


def test_a_redis_spool_without_the_redis_extra_is_a_config_error(without_extras, tmp_path):
    done = check(tmp_path, "spool:\n  type: redis\n  url: redis://127.0.0.1:6379/0\n",
                 without_extras)
    assert done.returncode == 2
    assert ("router.yaml:2: spool.type: a Redis spool needs the 'redis' extra, which is not "
            "installed: pip install 'beacon-router[redis]'") in done.stderr
    assert "Traceback" not in done.stderr


def test_a_postgresql_store_without_the_postgres_extra_is_a_config_error(without_extras,
                                                                        tmp_path):
    config = "backends:\n  archive:\n    type: store\n    url: postgresql://127.0.0.1/test\n"
    done = check(tmp_path, config, without_extras)
    assert done.returncode == 2
    assert ("router.yaml:4: backends.archive.url: a PostgreSQL store needs the 'postgres' "
            "extra") in done.stderr and "beacon-router[postgres]" in done.stderr


def test_the_same_configs_pass_where_the_extras_are_installed(tmp_path):
    env = {"PYTHONPATH": REPO}
    assert check(tmp_path, "spool: {type: redis, url: 'redis://127.0.0.1:6379/0'}\n",
                 env).returncode == 0
    assert check(tmp_path, "backends: {a: {type: store, url: 'postgresql://h/db'}}\n",
                 env).returncode == 0


async def test_the_shipped_config_serves_and_accepts_without_either_extra(without_extras,
                                                                         tmp_path):
    shutil.copytree(os.path.join(REPO, "config"), tmp_path / "config")
    router = RouterProcess("config/router.yaml", free_port(), str(tmp_path), env=without_extras)
    router.start()
    try:
        await router.wait_ready()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{router.url}/beacon", json={"installation_id": "a",
                                                               "version": "1.0.0"}) as resp:
                assert resp.status in (200, 202), await resp.text()
            async with http.get(f"{router.url}/metrics") as resp:
                assert resp.status == 200
        assert router.terminate() == 0
    finally:
        router.stop()
    assert "No module named" not in router.logs()
