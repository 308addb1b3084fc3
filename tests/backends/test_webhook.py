"""The webhook backend against a real aiohttp receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import pytest
import standardwebhooks
from aiohttp import web

from router.backends.webhook import WebhookBackend, WebhookOptions
from router.config.loader import loads
from router.errors import ConfigError

SECRET = "s3cret-shared-with-the-receiver"


@dataclass
class Received:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver whose answer each test chooses."""

    url: str = ""
    status: int = 200
    reply_headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.method, request.path, request.headers.copy(), body))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status, headers=self.reply_headers, text="ok")


@pytest.fixture
async def receiver(aiohttp_server) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hooks/beacons"))
    yield rec
    rec.release.set()  # let a hung handler finish so the server can stop


@pytest.fixture
async def webhook() -> AsyncIterator[Callable[..., WebhookBackend]]:
    made: list[WebhookBackend] = []

    def make(url: str, **options: object) -> WebhookBackend:
        backend = WebhookBackend("alerts", WebhookOptions(url=url, **options))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """What a receiver does (the same code as docs/backends.md), written independently here."""
    timestamp = headers.get("X-Beacon-Timestamp", "")
    signature = headers.get("X-Beacon-Signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)


async def test_posts_the_batch_as_json_signed_over_timestamp_and_body(
    receiver, webhook, make_events
):
    batch = make_events(3)
    backend = webhook(receiver.url, secret=SECRET, headers={"X-Env": "prod"})

    result = await backend.send(batch)

    assert result.ok
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/hooks/beacons")
    assert json.loads(got.body) == {"events": [event.to_dict() for event in batch]}
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("beacon-router/")
    assert got.headers["X-Env"] == "prod"
    assert verify_signature(SECRET, got.headers, got.body, time.time())
    # The verifier is not a rubber stamp: another secret or a changed body fails it.
    assert not verify_signature("other", got.headers, got.body, time.time())
    assert not verify_signature(
        SECRET, got.headers, got.body.replace(b"2.1.0", b"9.9.9"), time.time()
    )


async def test_without_a_secret_sends_no_signature(receiver, webhook, make_events):
    backend = webhook(receiver.url, secret="")  # what an unset ${WEBHOOK_SECRET} expands to

    assert (await backend.send(make_events(1))).ok

    headers = receiver.requests[0].headers
    assert "X-Beacon-Signature" not in headers
    assert "X-Beacon-Timestamp" not in headers


async def test_idempotency_key_is_stable_for_a_redelivered_batch_only(
    receiver, webhook, make_events
):
    batch, other = make_events(2), make_events(2)
    backend = webhook(receiver.url)

    for b in (batch, list(reversed(batch)), other):
        await backend.send(b)

    keys = [r.headers["Idempotency-Key"] for r in receiver.requests]
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_server_errors_are_retried(receiver, webhook, make_events, status):
    receiver.status = status

    result = await webhook(receiver.url).send(make_events(2))

    assert result.retry == (0, 1)
    assert not result.dead
    assert str(status) in result.reason


async def test_429_is_retried_after_the_servers_retry_after(receiver, webhook, make_events):
    receiver.status, receiver.reply_headers = 429, {"Retry-After": "30"}

    result = await webhook(receiver.url).send(make_events(2))

    assert result.retry == (0, 1)
    assert result.retry_after == 30.0


@pytest.mark.parametrize("status", [400, 401, 404, 413, 501])
async def test_client_errors_are_dead_lettered(receiver, webhook, make_events, status):
    receiver.status = status

    result = await webhook(receiver.url).send(make_events(2))

    assert set(result.dead) == {0, 1}
    assert not result.retry
    assert f"HTTP {status}" in result.reason


async def test_redirect_is_not_followed_and_is_dead(receiver, webhook, make_events):
    receiver.status, receiver.reply_headers = 302, {"Location": "/elsewhere"}

    result = await webhook(receiver.url, secret=SECRET).send(make_events(1))

    assert set(result.dead) == {0}
    assert [r.path for r in receiver.requests] == ["/hooks/beacons"]


async def test_refused_connection_is_retried(webhook, make_events, closed_port):
    result = await webhook(f"http://127.0.0.1:{closed_port}/hook").send(make_events(2))

    assert result.retry == (0, 1)
    assert "cannot connect to 127.0.0.1" in result.reason


async def test_hung_receiver_is_retried_after_the_timeout(receiver, webhook, make_events):
    receiver.hang = True

    result = await webhook(receiver.url, timeout="200ms").send(make_events(2))

    assert result.retry == (0, 1)
    assert "timed out after 0.2s" in result.reason


async def test_reasons_name_the_host_but_not_the_url_path_or_query(
    webhook, make_events, closed_port
):
    url = f"http://127.0.0.1:{closed_port}/hooks/T0KEN-IN-PATH?sig=T0KEN-IN-QUERY"

    result = await webhook(url).send(make_events(1))

    assert f"127.0.0.1:{closed_port}" in result.reason
    assert "T0KEN" not in result.reason


async def test_render_is_what_send_posts_with_credentials_masked(receiver, webhook, make_events):
    batch = make_events(2)
    backend = webhook(receiver.url, secret=SECRET, headers={"Authorization": "Bearer T0KEN"})

    [request] = backend.render(batch)
    await backend.send(batch)

    sent = receiver.requests[0]
    assert (request.method, request.url) == ("POST", receiver.url)
    assert request.body == json.loads(sent.body)
    assert request.headers["Authorization"] == "***"
    assert sent.headers["Authorization"] == "Bearer T0KEN"
    assert request.headers["Idempotency-Key"] == sent.headers["Idempotency-Key"]
    assert request.headers["User-Agent"] == sent.headers["User-Agent"]


async def test_an_empty_batch_is_delivered_without_a_request(receiver, webhook):
    assert (await webhook(receiver.url).send([])).ok
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "https://h.example.com", "headers": {"Content-Type": "text/plain"}}, "set by"),
        ({"url": "https://h.example.com", "timeout": "0s"}, "greater than 0"),
        ({"url": "https://h.example.com", "method": "GET"}, "'POST'"),
        ({"url": "https://h.example.com", "retries": 3}, "unknown key"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(options, message):
    text = json.dumps({"backends": {"alerts": {"type": "webhook", **options}}})

    with pytest.raises(ConfigError) as err:
        loads(text)

    assert "backends.alerts" in str(err.value)
    assert message in str(err.value)


async def test_spooled_events_are_posted_byte_for_byte_as_send_posts_them(
    receiver, webhook, make_events
):
    batch = make_events(3)
    backend = webhook(receiver.url, secret=SECRET)

    await backend.send(batch)
    await backend.send_spooled([event.to_json() for event in batch])

    by_send, spliced = receiver.requests
    assert spliced.body == by_send.body
    assert spliced.headers["Idempotency-Key"] == by_send.headers["Idempotency-Key"]
    assert verify_signature(SECRET, spliced.headers, spliced.body, time.time())


# -- format: ndjson and single (the client's own payload) ---------------------------------------


async def test_ndjson_posts_each_events_data_on_a_line_of_its_own_signed(
    receiver, webhook, make_events
):
    batch = make_events(3)
    backend = webhook(receiver.url, secret=SECRET, format="ndjson")

    assert (await backend.send(batch)).ok

    [got] = receiver.requests
    assert got.headers["Content-Type"] == "application/x-ndjson"
    lines = got.body.decode().splitlines()
    assert [json.loads(line) for line in lines] == [event.data for event in batch]
    assert got.body.endswith(b"\n")
    assert verify_signature(SECRET, got.headers, got.body, time.time())
    assert not backend.sends_spooled  # the spool's bytes are the `events` shape, not this one


async def test_single_posts_one_request_per_event_with_its_data_as_the_body(
    receiver, webhook, make_events
):
    batch = make_events(3)
    backend = webhook(receiver.url, secret=SECRET, format="single")

    assert (await backend.send(batch)).ok

    assert sorted(json.loads(r.body)["version"] for r in receiver.requests) == [
        "2.0.0", "2.1.0", "2.2.0"]
    by_key = {r.headers["Idempotency-Key"]: json.loads(r.body) for r in receiver.requests}
    assert by_key == {event.uuid: event.data for event in batch}
    assert all(verify_signature(SECRET, r.headers, r.body, time.time())
               for r in receiver.requests)


async def test_single_reports_each_events_fate_on_its_own(aiohttp_server, webhook, make_events):
    batch = make_events(3)
    fates = {batch[1].uuid: 503, batch[2].uuid: 422}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        status = fates.get(request.headers["Idempotency-Key"], 200)
        return web.Response(status=status, headers={"Retry-After": "7"} if status == 503 else {})

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = await aiohttp_server(app)
    backend = webhook(str(server.make_url("/hook")), format="single")

    result = await backend.send(batch)

    assert result.retry == (1,)
    assert list(result.dead) == [2]
    assert result.retry_after == 7


def test_render_shows_what_each_format_would_post(make_events):
    batch = make_events(2)
    for fmt, requests, body in (
        ("events", 1, {"events": [e.to_dict() for e in batch]}),
        ("ndjson", 1, [e.data for e in batch]),
        ("single", 2, batch[0].data),
    ):
        rendered = WebhookBackend("hook", WebhookOptions(url="http://h/x", format=fmt)).render(
            batch)
        assert len(rendered) == requests
        assert rendered[0].body == body


# -- signature: standard (Standard Webhooks), checked with the receivers' own library ----------

STANDARD_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


async def test_standard_signature_verifies_with_the_standardwebhooks_library(
    receiver, webhook, make_events
):
    batch = make_events(2)
    backend = webhook(receiver.url, secret=STANDARD_SECRET, signature="standard")

    assert (await backend.send(batch)).ok
    await backend.send_spooled([event.to_json() for event in batch])  # the splicing path too

    for got in receiver.requests:
        # verify() raises WebhookVerificationError on a bad signature or a stale timestamp
        assert standardwebhooks.Webhook(STANDARD_SECRET).verify(got.body, got.headers) == {
            "events": [event.to_dict() for event in batch]}
        assert got.headers["webhook-signature"].startswith("v1,")
        assert "X-Beacon-Signature" not in got.headers
    first, spliced = receiver.requests
    # the id names the message: a redelivery of the same events carries the same one
    assert first.headers["webhook-id"] == spliced.headers["webhook-id"]
    assert first.headers["webhook-id"] == "msg_" + first.headers["Idempotency-Key"]
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(first.body, first.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(STANDARD_SECRET).verify(first.body + b" ", first.headers)


async def test_the_beacon_signature_stays_the_default(receiver, webhook, make_events):
    backend = webhook(receiver.url, secret=SECRET)
    assert (await backend.send(make_events(1))).ok
    [got] = receiver.requests
    assert "webhook-signature" not in got.headers and "X-Beacon-Signature" in got.headers


@pytest.mark.parametrize(
    ("secret", "message"),
    [("not base64!", "whsec_ followed by base64"),
     ("whsec_" + base64.b64encode(b"short").decode(), "at least 24 bytes")],
)
def test_a_standard_signature_needs_a_whsec_secret(secret, message):
    text = json.dumps({"backends": {"alerts": {
        "type": "webhook", "url": "https://h.example.com", "signature": "standard",
        "secret": secret}}})
    with pytest.raises(ConfigError) as err:
        loads(text)
    assert "backends.alerts" in str(err.value) and message in str(err.value)
    assert secret not in str(err.value)
