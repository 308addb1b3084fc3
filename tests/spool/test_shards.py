"""Per-worker spool files: naming, the lock, and adoption of the files of removed workers.

Real SQLite files in tmp_path, real ``flock``s, a real file backend; the process-level
behaviour (several workers, kill -9, restart with fewer) is in tests/serve/test_supervisor.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3

import pytest
from support import until

from router.cli import main
from router.config.loader import loads
from router.errors import Unavailable
from router.event import Event
from router.metrics import Metrics
from router.serve.adoption import Adoption
from router.spool import SqliteSpool
from router.spool.shards import (
    DEAD_LETTER_ID_STRIDE,
    ShardLock,
    shard_files,
    shard_path,
    worker_spool,
)


def config_text(tmp_path, **spool):
    spool_yaml = ", ".join(f"{k}: {v}" for k, v in {"path": tmp_path / "spool.db", **spool}.items())
    return f"""
spool: {{{spool_yaml}}}
backends:
  out: {{type: file, path: {tmp_path / "out.jsonl"}, batch: {{max_events: 100, max_wait: 10ms}}}}
"""


def config_for(tmp_path, **spool):
    return loads(config_text(tmp_path, **spool))


async def fill(path, count: int, *, dead: int = 0, index: int = 0) -> list[str]:
    """Spool file ``index`` as a stopped worker leaves it: ``count`` events queued for ``out``,
    and ``dead`` more already dead-lettered. Returns the queued events' uuids."""
    spool = SqliteSpool(str(path), dead_letter_id_base=index * DEAD_LETTER_ID_STRIDE)
    await spool.open(["out"])
    events = [Event.new({"n": i}) for i in range(count + dead)]
    await spool.append([e.to_json() for e in events])
    if dead:
        entries = await spool.read("out", dead)
        await spool.dead_letter("out", [(e, "refused") for e in entries], attempts=1)
        await spool.ack("out", entries)
    await spool.close()
    return [e.uuid for e in events[dead:]]


def delivered(tmp_path) -> list[str]:
    out = tmp_path / "out.jsonl"
    if not out.exists():
        return []
    return [json.loads(line)["uuid"] for line in out.read_text().splitlines()]




# -- naming ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "index", "expected"),
    [
        ("data/spool.db", 0, "data/spool.db"),
        ("data/spool.db", 1, "data/spool-1.db"),
        ("data/spool.db", 12, "data/spool-12.db"),
        ("/var/lib/beacon-router/spool", 2, "/var/lib/beacon-router/spool-2"),
    ],
)
def test_worker_zero_keeps_the_configured_file_and_others_get_a_numbered_sibling(
    path, index, expected
):
    assert shard_path(path, index) == expected


def test_shard_files_lists_the_family_and_nothing_else(tmp_path):
    for name in [
        "spool.db",
        "spool-1.db",
        "spool-1.db-wal",
        "spool-1.db.lock",
        "spool-3.db",
        "spool-01.db",
        "spool-x.db",
        "other-2.db",
        "spool-2.db.bak",
    ]:
        (tmp_path / name).write_bytes(b"")
    base = str(tmp_path / "spool.db")
    assert shard_files(base) == {0: base, 1: shard_path(base, 1), 3: shard_path(base, 3)}


def test_a_worker_spool_is_its_own_file_with_its_share_of_max_size(tmp_path):
    config = config_for(tmp_path, max_size="4MiB")
    spool = worker_spool(config.spool, 2, 4)
    assert isinstance(spool, SqliteSpool)
    assert spool.path == str(tmp_path / "spool-2.db")
    assert spool.max_size == 1024 * 1024
    assert spool.dead_letter_id_base == 2 * DEAD_LETTER_ID_STRIDE
    single = worker_spool(config.spool, 0, 1)
    assert isinstance(single, SqliteSpool)
    assert (single.path, single.max_size) == (str(tmp_path / "spool.db"), 4 * 1024 * 1024)


def test_workers_on_redis_share_the_stream_but_never_a_consumer_name():
    spool = loads("spool: {type: redis, url: 'redis://127.0.0.1:6379/0', consumer: edge}\n").spool
    first, second = worker_spool(spool, 0, 2), worker_spool(spool, 1, 2)
    assert (first.consumer, second.consumer) == ("edge", "edge-1")  # type: ignore[attr-defined]


async def test_dead_letter_ids_of_a_worker_file_name_that_file(tmp_path):
    spool = worker_spool(config_for(tmp_path).spool, 3, 4)
    await spool.open(["out"])
    await spool.append([Event.new({}).to_json()])
    entries = await spool.read("out", 1)
    await spool.dead_letter("out", [(entries[0], "refused")], attempts=1)
    [letter] = await spool.dead_letters("out")  # type: ignore[attr-defined]
    await spool.close()
    assert letter.id == 3 * DEAD_LETTER_ID_STRIDE + 1


# -- the lock ----------------------------------------------------------------------------------


def test_only_one_holder_of_a_spool_lock_at_a_time(tmp_path):
    path = str(tmp_path / "spool.db")
    first, second = ShardLock(path), ShardLock(path)  # flock: two open files conflict too
    assert first.try_acquire()
    assert not second.try_acquire()
    assert (tmp_path / "spool.db.lock").read_text().strip() == str(os.getpid())
    first.release()
    assert second.try_acquire()
    second.release()


async def test_waiting_for_a_busy_spool_lock_gives_up_naming_the_holder(tmp_path):
    path = str(tmp_path / "spool.db")
    holder = ShardLock(path)
    assert holder.try_acquire()
    with pytest.raises(Unavailable, match=f"in use by another process \\(pid {os.getpid()}\\)"):
        await ShardLock(path).acquire(timeout=0.2)
    holder.release()


def test_a_lock_whose_file_was_removed_meanwhile_is_not_held(tmp_path):
    path = str(tmp_path / "spool.db")
    old = ShardLock(path)
    assert old.try_acquire()
    old.release(remove=True)
    fresh = ShardLock(path)
    assert fresh.try_acquire()  # a new lock file: the removed one guards nothing
    assert ShardLock(path).try_acquire() is False
    fresh.release()


# -- adoption ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "count", "adopted"),
    [(0, 1, [1, 2, 3, 4, 5]), (0, 2, [2, 4]), (1, 2, [3, 5]), (2, 3, [5])],
)
def test_each_removed_workers_file_has_exactly_one_adopter(tmp_path, index, count, adopted):
    adoption = Adoption(config_for(tmp_path), index, count, Metrics())
    assert [k for k in range(6) if adoption.mine(k)] == adopted


async def test_an_adopted_file_is_delivered_then_deleted_with_its_lock(tmp_path):
    shard = tmp_path / "spool-1.db"
    queued = await fill(shard, 30)
    adoption = Adoption(config_for(tmp_path), 0, 1, Metrics())
    adoption.start()
    try:
        await until(lambda: not shard.exists() and not (tmp_path / "spool-1.db.lock").exists())
    finally:
        await adoption.stop()
    assert sorted(delivered(tmp_path)) == sorted(queued)
    assert not any(p.name.startswith("spool-1.db") for p in tmp_path.iterdir())


async def test_a_file_with_dead_letters_is_drained_but_kept_for_dlq_commands(tmp_path):
    shard = tmp_path / "spool-2.db"
    queued = await fill(shard, 5, dead=2)
    adoption = Adoption(config_for(tmp_path), 0, 2, Metrics())
    adoption.start()
    try:
        await until(lambda: 2 in adoption.kept)
    finally:
        await adoption.stop()
    assert sorted(delivered(tmp_path)) == sorted(queued)
    assert shard.exists()
    assert ShardLock(str(shard)).try_acquire(), "the lock must be free after stop"
    spool = SqliteSpool(str(shard))
    await spool.open([])
    assert len(await spool.dead_letters("out")) == 2
    await spool.close()


async def test_a_file_locked_by_another_process_is_not_adopted_until_released(tmp_path):
    shard = tmp_path / "spool-1.db"
    queued = await fill(shard, 3)
    still_stopping = ShardLock(str(shard))
    assert still_stopping.try_acquire()
    adoption = Adoption(config_for(tmp_path), 0, 1, Metrics())
    adoption.start()
    try:
        await asyncio.sleep(0.1)
        assert adoption.draining == {}
        assert delivered(tmp_path) == []
        still_stopping.release()
        await until(lambda: sorted(delivered(tmp_path)) == sorted(queued))
    finally:
        await adoption.stop()


async def test_a_file_adopted_after_a_reload_goes_to_the_reloaded_backends(tmp_path):
    # An inline worker's adoption reads the config in force before each look for files
    # (serve/adoption.py, install): the backends of its start may have been reloaded since.
    started, reloaded = config_for(tmp_path), loads(
        config_text(tmp_path).replace("out.jsonl", "reloaded.jsonl"))
    shard = tmp_path / "spool-1.db"
    queued = await fill(shard, 4)
    still_stopping = ShardLock(str(shard))  # its worker is still stopping: not adopted yet
    assert still_stopping.try_acquire()
    now = [started]
    adoption = Adoption(started, 0, 1, Metrics(), current=lambda: now[0])
    adoption.start()
    try:
        await asyncio.sleep(0.1)  # a look with the first config
        assert adoption.draining == {}
        now[0] = reloaded  # the reload
        still_stopping.release()
        await until(lambda: not shard.exists())
    finally:
        await adoption.stop()
    assert delivered(tmp_path) == []
    out = tmp_path / "reloaded.jsonl"
    assert sorted(json.loads(line)["uuid"] for line in out.read_text().splitlines()) \
        == sorted(queued)


# -- admin commands over every file ------------------------------------------------------------


def test_dlq_and_status_commands_see_the_dead_letters_of_every_workers_file(tmp_path, capsys):
    (tmp_path / "router.yaml").write_text(config_text(tmp_path))
    asyncio.run(fill(tmp_path / "spool.db", 1, dead=1))
    asyncio.run(fill(tmp_path / "spool-1.db", 0, dead=2, index=1))
    config = ["--config", str(tmp_path / "router.yaml")]

    assert main(["dlq", "list", "--backend", "out", *config]) == 0
    ids = [int(line.split("\t")[0]) for line in capsys.readouterr().out.splitlines()]
    assert sorted(ids) == [1, DEAD_LETTER_ID_STRIDE + 1, DEAD_LETTER_ID_STRIDE + 2]

    assert main(["dlq", "replay", "--backend", "out", "--id", str(max(ids)), *config]) == 0
    assert "replayed 1 events" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "spool-1.db") as conn:  # back in the file it came from
        assert conn.execute("SELECT count(*) FROM events WHERE target = 'out'").fetchone() == (1,)
    assert main(["status", *config]) == 0
    [row] = [
        line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("out")
    ]
    assert row[1:3] == ["2", "2"]  # queued: one in each file; dead: the two left
