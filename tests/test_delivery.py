"""Delivery workers against a real SQLite spool and a MockBackend."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from support import until

from router.backends.base import SendResult
from router.backends.store import StoreBackend, StoreOptions
from router.config.loader import loads
from router.delivery import SendLimits, Worker, backoff
from router.event import Event
from router.metrics import Metrics
from router.spool import SqliteSpool
from router.testing import MockBackend

BACKEND = """
backends:
  test:
    type: router.testing:MockBackend
    batch: {max_events: %(max_events)s, max_wait: 50ms}
    retry: {initial: 10ms, max: 20ms, give_up_after: %(give_up)s}
    %(extra)s
"""


def spec(max_events=10, give_up="1h", extra=""):
    text = BACKEND % {"max_events": max_events, "give_up": give_up, "extra": extra}
    return loads(text).backends["test"]


@pytest.fixture
async def spool(tmp_path):
    s = SqliteSpool(str(tmp_path / "spool.db"))
    await s.open(["test"])
    yield s
    await s.close()


async def put(spool, n, **data):
    events = [Event.new({"i": i, **data}) for i in range(n)]
    await spool.append([e.to_json() for e in events])
    return events


async def run_worker(spool, backend, **kw):
    worker = Worker(spec(**kw), backend, spool, Metrics())
    worker.start()
    return worker


async def test_every_event_is_delivered_once_in_batches_and_acked(spool):
    sent = await put(spool, 25)
    backend = MockBackend()
    worker = await run_worker(spool, backend, max_events=10)
    await until(lambda: len(backend.events) == 25)
    await until(lambda: worker.health.last_success is not None)
    assert [e.uuid for e in backend.events] == [e.uuid for e in sent]
    assert max(len(b) for b in backend.batches) <= 10
    await worker.stop(1)
    assert await spool.depth("test") == 0


async def test_retryable_failure_is_retried_until_delivered(spool):
    await put(spool, 3)
    answers = [SendResult.retry_all(3, "HTTP 503"), SendResult.retry_all(3, "HTTP 503")]
    backend = MockBackend(handler=lambda b: answers.pop(0) if answers else SendResult.delivered())
    worker = await run_worker(spool, backend)
    await until(lambda: len(backend.batches) == 3)
    await until(lambda: worker.health.consecutive_failures == 0)
    await worker.stop(1)
    assert await spool.depth("test") == 0
    assert await spool.dead_letters("test") == []


async def test_permanent_failure_goes_to_the_dead_letter_queue_with_reason(spool):
    await put(spool, 2)
    backend = MockBackend(handler=lambda b: SendResult.dead_all(len(b), "HTTP 400: bad"))
    worker = await run_worker(spool, backend)
    await until(lambda: len(backend.batches) == 1)
    await until(lambda: spool._readers["test"].position > 0)
    dead = await spool.dead_letters("test")
    assert [(d.reason, d.attempts) for d in dead] == [("HTTP 400: bad", 1)] * 2
    await worker.stop(1)


async def test_partial_result_retries_only_the_named_events(spool):
    sent = await put(spool, 3)
    calls = []

    def handler(batch):
        calls.append([e.uuid for e in batch])
        if len(calls) == 1:
            return SendResult(retry=(2,), dead={0: "too big"}, reason="partial")
        return SendResult.delivered()

    backend = MockBackend(handler=handler)
    worker = await run_worker(spool, backend)
    await until(lambda: len(calls) == 2)
    assert calls[1] == [sent[2].uuid]
    await until(lambda: spool._readers["test"].position == 3)
    assert [d.reason for d in await spool.dead_letters("test")] == ["too big"]
    await worker.stop(1)


async def test_events_that_keep_failing_are_dead_lettered_after_give_up_after(spool):
    await put(spool, 1)
    backend = MockBackend(handler=lambda b: SendResult.retry_all(len(b), "HTTP 500"))
    worker = await run_worker(spool, backend, give_up="50ms")
    await until(lambda: spool._readers["test"].position == 1)
    dead = await spool.dead_letters("test")
    assert len(dead) == 1 and dead[0].reason.startswith("gave up after")
    assert dead[0].attempts >= 2
    await worker.stop(1)


async def test_backend_exception_is_treated_as_retryable_not_fatal(spool):
    await put(spool, 1)
    calls = []

    def handler(batch):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return SendResult.delivered()

    backend = MockBackend(handler=handler)
    worker = await run_worker(spool, backend)
    await until(lambda: len(calls) == 2)
    await until(lambda: spool._readers["test"].position == 1)
    await worker.stop(1)


async def test_when_and_backend_filters_apply_before_sending(spool):
    await put(spool, 2, version="2.1", secret="x")
    await put(spool, 2, version="1.0", secret="x")
    backend = MockBackend()
    extra = ("when: {field: version, matches: '^2\\.'}\n"
             "    filters: [{type: drop, fields: [secret]}]")
    worker = await run_worker(spool, backend, extra=extra)
    await until(lambda: spool._readers["test"].position == 4)
    assert [e.data["version"] for e in backend.events] == ["2.1", "2.1"]
    assert all("secret" not in e.data for e in backend.events)
    await worker.stop(1)


async def test_events_a_backends_when_skips_are_counted_as_drops(spool):
    await put(spool, 3, version="1.0")
    await put(spool, 1, version="2.0")
    metrics = Metrics()
    extra = "when: {field: version, matches: '^2\\.'}"
    worker = Worker(spec(extra=extra), MockBackend(), spool, metrics)
    worker.start()
    await until(lambda: spool._readers["test"].position == 4)
    await worker.stop(1)
    assert metrics.dropped.labels("backend:test", "when", "no_match")._value.get() == 3


async def test_stop_during_retry_leaves_the_batch_in_the_spool(spool):
    await put(spool, 2)
    backend = MockBackend(handler=lambda b: SendResult.retry_all(len(b), "down"))
    worker = await run_worker(spool, backend)
    await until(lambda: len(backend.batches) >= 1)
    await worker.stop(1)
    assert await spool.depth("test") == 2


def test_backoff_never_comes_before_retry_after_and_stays_under_max():
    for attempt in range(1, 40):
        assert 0 <= backoff(attempt, 1.0, 600.0, None) <= 600.0
        assert backoff(attempt, 1.0, 600.0, 30.0) >= 30.0


async def test_an_unhealthy_backend_is_probed_one_batch_at_a_time(spool):
    await put(spool, 40)
    probes_in_flight, most_probes, probes = 0, 0, 0
    failures = []
    worker: Worker | None = None

    async def handler(batch):
        nonlocal probes_in_flight, most_probes, probes
        probing = worker is not None and not worker.health.healthy
        if probing:
            probes += 1
            probes_in_flight += 1
            most_probes = max(most_probes, probes_in_flight)
        await asyncio.sleep(0.01)
        if probing:
            probes_in_flight -= 1
        if len(failures) < 12:
            failures.append(1)
            return SendResult.retry_all(len(batch), "HTTP 503")
        return SendResult.delivered()

    backend = MockBackend(handler=handler)
    worker = await run_worker(spool, backend, max_events=5, extra="concurrency: 4")
    await until(lambda: spool._readers["test"].position == 40)
    await worker.stop(1)
    assert probes >= 5, "the backend should have been unhealthy for a while"
    assert most_probes == 1, "while unhealthy, only one batch at a time may be sent"
    assert worker.health.healthy


async def test_a_webhook_gets_spooled_bytes_and_a_corrupt_entry_is_dead_lettered_alone(spool):
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from router.backends.webhook import WebhookBackend, WebhookOptions

    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.extend((await request.json())["events"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sent = await put(spool, 2)
    await spool.append([b'{"uuid":"truncated'])  # a damaged row: not JSON at all
    sent += await put(spool, 2)
    backend = WebhookBackend("test", WebhookOptions(url=str(server.make_url("/hook"))))
    worker = await run_worker(spool, backend)
    assert worker._spooled  # no `when:` or filters: bytes go as they are
    try:
        await until(lambda: len(received) == 4)
        await until(lambda: worker.health.last_success is not None)
        assert [e["uuid"] for e in received] == [e.uuid for e in sent]
        assert received[0] == sent[0].to_dict()
        [letter] = await spool.dead_letters("test", 10)
        assert "undecodable spool entry" in letter.reason
    finally:
        await worker.stop(1)
        await backend.aclose()
        await server.close()


async def test_a_store_decodes_spooled_bytes_itself_and_a_corrupt_entry_is_dead_lettered_alone(
        spool, tmp_path):
    # No framing check before a store (it decodes each body anyway): a damaged row is still
    # refused alone, by index, and the rows around it stored.
    sent = await put(spool, 2)
    await spool.append([b'{"uuid":"truncated', b'{"event":"x","uuid":"y"}'])
    sent += await put(spool, 2)
    backend = StoreBackend("test", StoreOptions(url=f"sqlite:///{tmp_path}/archive.db"))
    worker = await run_worker(spool, backend)
    assert worker._spooled and backend.decodes_spooled

    async def both_dead() -> bool:
        return len(await spool.dead_letters("test", 10)) == 2

    try:
        await until(both_dead)
        await until(lambda: worker.health.last_success is not None)
        letters = await spool.dead_letters("test", 10)
        assert all("undecodable spool entry" in letter.reason for letter in letters)
        with sqlite3.connect(tmp_path / "archive.db") as db:
            stored = {row[0] for row in db.execute("SELECT uuid FROM beacons")}
        assert stored == {e.uuid for e in sent}
    finally:
        await worker.stop(1)
        await backend.aclose()


async def test_workers_of_one_backend_on_two_spools_share_its_concurrency(tmp_path):
    """The delivery process's seam: one Worker per spool file, one SendLimits for all."""
    spools = []
    for n in range(2):
        s = SqliteSpool(str(tmp_path / f"spool-{n}.db"))
        await s.open(["test"])
        spools.append(s)
    in_flight, peak = 0, 0

    async def slow(batch):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return SendResult.delivered()

    limits = SendLimits()
    the_spec = spec(max_events=5, extra="concurrency: 2")
    backend = MockBackend(handler=slow)
    workers = [Worker(the_spec, backend, s, Metrics(), limits(the_spec)) for s in spools]
    for s in spools:
        await put(s, 40)
    for w in workers:
        w.start()
    await until(lambda: len(backend.events) == 80)
    for w in workers:
        await w.stop(1)
    for s in spools:
        await s.close()
    assert peak == 2  # four tasks over two files, two sends at most: and it gets there


def test_a_reload_that_changes_concurrency_gives_new_sends_a_new_limit():
    limits = SendLimits()
    one, two = spec(extra="concurrency: 1"), spec(extra="concurrency: 2")
    first = limits(one)
    assert limits(one) is first  # every file's worker: the same limit
    changed = limits(two)
    assert changed is not first and changed.concurrency == 2
    assert limits(two) is changed
