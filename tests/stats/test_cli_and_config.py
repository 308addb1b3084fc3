"""``beacon-router stats`` and the ``stats:`` / ``admin:`` config sections."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Store, beacon

from router.cli import main
from router.config.loader import loads
from router.errors import ConfigError


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


async def seed(store: Store) -> None:
    await store.add(
        [beacon(days_ago(2), f"i{i}", "2.0.0", "linux") for i in range(3)]
        + [beacon(days_ago(40), "old", "1.0.0", "darwin")]
    )


def run_stats(store: Store, tmp_path, capsys, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "router.yaml"
    config.write_text(f"backends:\n  {store.yaml}\n")
    code = main(["stats", "--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_command_prints_totals_and_breakdowns(sqlite_store, tmp_path, capsys):
    asyncio.run(seed(sqlite_store))
    code, out, _ = run_stats(sqlite_store, tmp_path, capsys)
    assert code == 0
    assert f"Installed base {days_ago(29)} to {days_ago(0)} (UTC), store 'archive'" in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "active, 7 days 3" in lines
    assert "installations in range 3" in lines
    assert "2.0.0 3 100.0%" in lines  # "old" was last seen 40 days ago: outside 30 days
    assert "linux 3 100.0%" in lines


def test_stats_command_prints_json_for_scripts(sqlite_store, tmp_path, capsys):
    asyncio.run(seed(sqlite_store))
    code, out, _ = run_stats(sqlite_store, tmp_path, capsys, "--output", "json")
    report = json.loads(out)
    assert code == 0 and report["store"] == "archive"
    assert (report["from"], report["to"]) == (days_ago(29), days_ago(0))
    assert report["totals"]["installations"] == 3
    assert report["breakdowns"]["version"][0] == {"value": "2.0.0", "installations": 3} | {
        k: v for k, v in report["breakdowns"]["version"][0].items()
        if k not in ("value", "installations")}


def test_stats_command_days_option_widens_the_range(sqlite_store, tmp_path, capsys):
    asyncio.run(seed(sqlite_store))
    code, out, _ = run_stats(sqlite_store, tmp_path, capsys, "--days", "60")
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert code == 0 and "installations in range 4" in lines and "darwin 1 25.0%" in lines


def test_stats_command_refuses_a_silly_day_count(sqlite_store, tmp_path, capsys):
    code, _, err = run_stats(sqlite_store, tmp_path, capsys, "--days", "0")
    assert code == 2 and "--days" in err


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text).lstrip(), file="router.yaml", env={})
    return str(info.value)


def test_stats_store_must_name_a_store_backend():
    message = error_of("""
    backends:
      out: {type: stdout}
    stats:
      store: out
    """)
    assert message == "router.yaml:4: stats.store: must name a backend of `type: store`"


@pytest.mark.parametrize("bad", ["platform..os", "data['x']", "a b", ""])
def test_stats_dimensions_are_dotted_paths(bad):
    message = error_of(f"""
    stats:
      dimensions: [version, "{bad}"]
    """)
    assert message.startswith("router.yaml:2: stats.dimensions:")
    assert "dotted path" in message


def test_stats_and_admin_keys_are_checked_and_defaults_are_off():
    assert "unknown key" in error_of("stats: {k_anon: 5}\n")
    assert "greater than or equal to 2" in error_of("stats: {k: 1}\n")
    config = loads("{}")
    assert (config.admin.token, config.stats.public, config.stats.k) == (None, False, 10)
    assert config.stats.dimensions == ("version", "platform.os", "deployment_type")
    assert loads("stats: {cache: 2m}\n").stats.cache == 120


def test_admin_token_is_masked_and_empty_variable_means_off():
    from router.config import masked

    config = loads("admin: {token: '${ADMIN_TOKEN:-}'}\n", env={})
    assert config.admin.token is None
    config = loads("admin: {token: '${ADMIN_TOKEN}'}\n", env={"ADMIN_TOKEN": "s3cret"})
    assert config.admin.token is not None and "s3cret" not in repr(config.admin)
    assert masked(dict(config.raw))["admin"]["token"] == "***"
