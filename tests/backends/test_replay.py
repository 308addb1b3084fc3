"""Replay from SQLite and PostgreSQL archives through the target's own when:, filters and
dead-letter queue; selection by time and condition; dry-run; the progress line."""

from __future__ import annotations

import asyncio
import io
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from support import REDIS_URL

from router.cli import main
from router.config.loader import loads
from router.errors import ConfigError
from router.event import Event
from router.replay import Replay, Selection
from router.replay.checkpoint import Checkpoint
from router.replay.progress import ProgressLine
from router.spool import SqliteSpool
from router.spool.redis import RedisSpool


def config_text(tmp_path: Path, hook_url: str, archive_url: str, hook_extra: str = "") -> str:
    return textwrap.dedent(f"""
        spool: {{path: {tmp_path}/spool.db}}
        backends:
          archive: {{type: store, url: "{archive_url}"}}
          hook:
            type: webhook
            url: "{hook_url}"
            batch: {{max_events: 7, max_wait: 10ms}}
            retry: {{initial: 10ms, max: 20ms}}
        """) + textwrap.indent(textwrap.dedent(hook_extra), "    ")


def events(n: int) -> list[Event]:
    return [Event.new({"installation_id": f"inst-{i}", "version": f"{i % 3}.1.0", "n": i},
                      received_at=f"2026-11-{1 + i:02d}T08:00:00.000Z") for i in range(n)]


class Hook:
    """A webhook endpoint on loopback that keeps every event it is sent, answering ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.events: list[dict] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.status == 200:
            self.events.extend((await request.json())["events"])
        return web.json_response({}, status=self.status)

    def received(self) -> Counter[str]:
        return Counter(e["uuid"] for e in self.events)


@pytest.fixture
async def receiver(aiohttp_server):
    hook = Hook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    hook.url = str((await aiohttp_server(app, host="127.0.0.1")).make_url("/hook"))
    return hook


async def fill(config, batch: list[Event]) -> None:
    store = config.backends["archive"].build()
    assert (await store.send(batch)).ok
    await store.aclose()


async def test_since_until_and_where_select_and_the_targets_when_and_filters_apply(
        tmp_path, receiver):
    config = loads(config_text(tmp_path, receiver.url, f"sqlite:///{tmp_path}/a.db",
                               """
                               when: {field: version, in: ["1.1.0", "2.1.0"]}
                               filters: [{type: drop, fields: [n]}]
                               """))
    archived = events(20)
    await fill(config, archived)
    selection = Selection("archive", "hook", since="2026-11-03T00:00:00Z",
                          until="2026-11-15T00:00:00Z", where={"field": "n", "in": list(range(10))})

    cp = await Replay(config, selection, state_dir=tmp_path).run()

    wanted = {e.uuid for e in archived[2:10] if e.data["version"] != "0.1.0"}
    assert set(receiver.received()) == wanted and max(receiver.received().values()) == 1
    assert all("n" not in e["data"] for e in receiver.events)
    assert (cp.scanned, cp.matched, cp.delivered, cp.skipped) == (12, 8, len(wanted), 8 - 5)
    assert cp.done


async def test_events_the_target_refuses_go_to_its_dead_letter_queue_once(tmp_path, receiver):
    receiver.status = 400
    config = loads(config_text(tmp_path, receiver.url, f"sqlite:///{tmp_path}/a.db"))
    archived = events(10)
    await fill(config, archived)

    for restart in (False, True):
        spool = SqliteSpool(str(tmp_path / "spool.db"))
        await spool.open([])
        cp = await Replay(config, Selection("archive", "hook"), state_dir=tmp_path,
                          dead_letters=spool, restart=restart).run()
        await spool.close()
        assert cp.dead_lettered == 10 and cp.delivered == 0 and cp.done

    spool = SqliteSpool(str(tmp_path / "spool.db"))
    await spool.open([])
    letters = await spool.dead_letters("hook", 100)
    await spool.close()
    assert sorted(Event.from_json(d.body).uuid for d in letters) == sorted(
        e.uuid for e in archived)  # refused twice, kept once
    assert all("400" in d.reason for d in letters)


async def test_dry_run_counts_what_would_be_sent_and_sends_nothing(tmp_path, receiver):
    config = loads(config_text(tmp_path, receiver.url, f"sqlite:///{tmp_path}/a.db",
                               "when: {field: version, equals: 0.1.0}\n"))
    await fill(config, events(12))

    replay = Replay(config, Selection("archive", "hook"), state_dir=tmp_path, dry_run=True)
    cp = await replay.run()

    assert (cp.scanned, cp.delivered) == (12, 4)
    assert receiver.events == [] and not replay.path.exists()


@pytest.mark.postgres
async def test_replay_from_a_postgresql_archive_keeps_uuid_and_received_at(
        tmp_path, receiver, postgres_dsn, postgres_schema):
    config = loads(config_text(tmp_path, receiver.url, postgres_dsn)
                   .replace(f'url: "{postgres_dsn}"',
                            f'url: "{postgres_dsn}", schema: {postgres_schema}'))
    archived = events(25)
    await fill(config, archived)

    cp = await Replay(config, Selection("archive", "hook", since="2026-11-10T08:00:00Z"),
                      state_dir=tmp_path).run()

    assert cp.done and cp.delivered == 16
    by_uuid = {e["uuid"]: e for e in receiver.events}
    assert set(by_uuid) == {e.uuid for e in archived[9:]}
    assert by_uuid[archived[9].uuid]["received_at"] == "2026-11-10T08:00:00.000Z"
    assert by_uuid[archived[9].uuid]["data"] == archived[9].data


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "hook", "--to", "archive"], "--from 'hook' must name a `type: store` backend"),
    (["--from", "archive", "--to", "nope"], "--to 'nope' must name another backend"),
    (["--from", "archive", "--to", "hook", "--where", "{field: n, bogus: 1}"], "--where"),
])
def test_bad_arguments_exit_2_naming_what_is_wrong(tmp_path, capsys, args, message):
    path = tmp_path / "router.yaml"
    path.write_text(config_text(tmp_path, "http://127.0.0.1:9/hook", f"sqlite:///{tmp_path}/a.db"))

    assert main(["replay", "--config", str(path), *args]) == 2
    assert message in capsys.readouterr().err


def test_where_condition_errors_are_config_errors(tmp_path):
    config = loads(config_text(tmp_path, "http://127.0.0.1:9/hook", f"sqlite:///{tmp_path}/a.db"))
    with pytest.raises(ConfigError, match="--where"):
        Replay(config, Selection("archive", "hook", where={"all": "x"}), state_dir=tmp_path)


def test_progress_is_one_line_rewritten_on_a_tty_and_plain_lines_otherwise():
    cp = Checkpoint(Selection("archive", "posthog"), scanned=2500, delivered=2400,
                    dead_lettered=3)
    tty, plain = io.StringIO(), io.StringIO()
    on_tty, not_tty = ProgressLine(tty, tty=True), ProgressLine(plain, tty=False)
    for line in (on_tty, not_tty):
        line.start(Checkpoint(cp.selection))
        line(cp, 10_000)
        line(cp, 10_000)
        line.finish()

    assert tty.getvalue().count("\r\x1b[K") == 2 and tty.getvalue().endswith("\n")
    assert "archive → posthog: 2,500/10,000 events (25%), 2,400 delivered, 3 dead-lettered" \
        in tty.getvalue() and "ETA 0:" in tty.getvalue()
    assert plain.getvalue().count("\n") == 1 and "\r" not in plain.getvalue()  # at most 1 per 5 s


def test_a_bad_since_exits_2_naming_the_option(tmp_path, capsys):
    path = tmp_path / "router.yaml"
    path.write_text(config_text(tmp_path, "http://127.0.0.1:9/hook", f"sqlite:///{tmp_path}/a.db"))

    assert main(["replay", "--config", str(path), "--from", "archive", "--to", "hook",
                 "--since", "last tuesday"]) == 2
    assert "--since: must be an ISO 8601 time" in capsys.readouterr().err


async def test_a_target_that_fails_for_a_while_is_retried_as_live_delivery_retries(
        tmp_path, receiver):
    config = loads(config_text(tmp_path, receiver.url, f"sqlite:///{tmp_path}/a.db"))
    archived = events(20)
    await fill(config, archived)
    receiver.status = 503
    replay = Replay(config, Selection("archive", "hook"), state_dir=tmp_path)
    running = asyncio.create_task(replay.run())
    await asyncio.sleep(0.3)  # several attempts answered 503, backing off
    assert not running.done() and receiver.events == []
    receiver.status = 200

    cp = await asyncio.wait_for(running, 30)

    assert cp.done and cp.delivered == 20 and cp.dead_lettered == 0
    assert receiver.received() == Counter(e.uuid for e in archived)


@pytest.mark.redis
async def test_on_a_redis_spool_refused_events_land_in_the_targets_dead_letter_queue(
        tmp_path, receiver, prefix):
    receiver.status = 400
    config = loads(config_text(tmp_path, receiver.url, f"sqlite:///{tmp_path}/a.db"))
    archived = events(6)
    await fill(config, archived)
    spool = RedisSpool(REDIS_URL, key_prefix=prefix)
    await spool.open([])
    try:
        cp = await Replay(config, Selection("archive", "hook"), state_dir=tmp_path,
                          dead_letters=spool).run()
        letters = await spool.dead_letters("hook", 100)
        moved = await spool.replay("hook")  # `dlq replay` puts them on the stream for hook
    finally:
        await spool.close()

    assert cp.dead_lettered == 6
    assert sorted(Event.from_json(d.body).uuid for d in letters) == sorted(
        e.uuid for e in archived)
    assert all("400" in d.reason and d.attempts == 1 for d in letters) and moved == 6
