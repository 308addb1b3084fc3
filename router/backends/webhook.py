"""``type: webhook`` — POST each batch as JSON to a URL, signed with HMAC-SHA256.

Body, by ``format``: ``events`` (the default), ``{"events": [event.to_dict(), ...]}`` per batch;
``ndjson``, each event's ``data`` (the client's payload as the pipeline left it) on a line of
its own, per batch; ``single``, one request per event with its ``data`` as the body, the shape
the product's own client posts, for internal receivers that expect it.

With a ``secret``, the request carries ``X-Beacon-Timestamp: <unix seconds>`` and
``X-Beacon-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<timestamp> "." <exact body bytes>``
keyed by the secret; signing the timestamp lets a receiver reject replays. ``Idempotency-Key``
is derived from the batch's event uuids (``single``: the event's uuid), so a retried batch
carries the same key. See docs/backends.md for a receiver's verification code.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator

from ..config import Duration, masked
from ..event import Event, uuid_of_json
from .base import Backend, Options, Request, SendResult, register
from .http import USER_AGENT, HttpClient

SIGNATURE_HEADER = "X-Beacon-Signature"
TIMESTAMP_HEADER = "X-Beacon-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# Headers the backend sets itself; letting config override them would break the signature.
_RESERVED = {
    "content-type",
    "content-length",
    "host",
    IDEMPOTENCY_HEADER.lower(),
    SIGNATURE_HEADER.lower(),
    TIMESTAMP_HEADER.lower(),
}
# Configured header values shown as *** by dry-run.
_SENSITIVE = re.compile(r"authorization|cookie|token|secret|key|password", re.IGNORECASE)


class WebhookOptions(Options):
    """``url``, ``method``, extra ``headers``, per-request ``timeout``, signing ``secret``."""

    url: str = Field(description="where each batch is sent (its path is never logged)")
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="the HTTP method")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="extra request headers, e.g. Authorization")
    timeout: Duration = Field(10.0, gt=0, description="per request")
    # `secret: "${WEBHOOK_SECRET}"` expands to "" when the variable is unset: treated as no
    # secret (unsigned). Write `${WEBHOOK_SECRET:?must be set}` to make it mandatory.
    secret: SecretStr | None = Field(
        None, description="signs each request: X-Beacon-Signature, HMAC-SHA256; empty: unsigned")
    format: Literal["events", "ndjson", "single"] = Field(
        "events", description="events: {\"events\": [...]} per batch; ndjson: each event's data "
        "on a line, per batch; single: one request per event, its data as the body")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name.lower() in _RESERVED:
                raise ValueError(f"header {name!r} is set by the webhook backend itself")
        return v


@register
class WebhookBackend(Backend):
    """Sends each batch in one signed JSON request."""

    type = "webhook"
    Options = WebhookOptions

    def __init__(self, name: str, options: WebhookOptions) -> None:
        super().__init__(name, options)
        self.options: WebhookOptions = options
        secret = options.secret.get_secret_value() if options.secret else ""
        self._secret = secret.encode() or None
        self._http = HttpClient(timeout=options.timeout)
        # The spool's bytes are the `events` body's parts; the other formats need each event.
        self.sends_spooled = options.format == "events"

    def render(self, batch: Sequence[Event]) -> list[Request]:
        now = int(time.time())
        parts = [[e] for e in batch] if self.options.format == "single" else [batch]
        requests = []
        for part in parts:
            headers, _ = self._build(part, now)
            shown = {
                k: "***" if k in self.options.headers and _SENSITIVE.search(k) else v
                for k, v in headers.items()
            }
            requests.append(Request(self.options.method, masked(self.options.url), shown,
                                    self._shown_body(part)))
        return requests

    async def send(self, batch: Sequence[Event]) -> SendResult:
        if not batch:
            return SendResult.delivered()
        if self.options.format == "single":
            return SendResult.combine(await asyncio.gather(*(self._post([e]) for e in batch)))
        return await self._post(batch)

    async def _post(self, batch: Sequence[Event]) -> SendResult:
        try:
            headers, body = self._build(batch, int(time.time()))
        except TypeError:  # orjson.JSONEncodeError; cannot happen for events read from the spool
            return SendResult.dead_all(len(batch), "data cannot be encoded as JSON")
        return await self._http.send(
            self.options.method, self.options.url, len(batch), headers=headers, body=body
        )

    async def send_spooled(self, bodies: Sequence[bytes]) -> SendResult:
        """``send`` for events as the spool holds them, undecoded. A spooled event is the JSON
        of ``event.to_dict()``, so splicing the bodies gives the very bytes ``send`` would
        post, without decoding and re-encoding each event (bench/README.md, "webhook")."""
        if not bodies:
            return SendResult.delivered()
        body = b'{"events":[' + b",".join(bodies) + b"]}"
        try:
            uuids = [uuid_of_json(b) for b in bodies]
        except (ValueError, KeyError, TypeError) as exc:  # the worker lets no such body through
            return SendResult.dead_all(len(bodies), f"undecodable spool entry: {exc}")
        headers = self._headers(body, uuids, int(time.time()))
        return await self._http.send(
            self.options.method, self.options.url, len(bodies), headers=headers, body=body
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _build(self, batch: Sequence[Event], timestamp: int) -> tuple[dict[str, str], bytes]:
        match self.options.format:
            case "events":
                body = orjson.dumps(payload(batch))
            case "ndjson":
                body = b"".join(orjson.dumps(event.data) + b"\n" for event in batch)
            case "single":
                [event] = batch
                body = orjson.dumps(event.data)
        return self._headers(body, [event.uuid for event in batch], timestamp), body

    def _shown_body(self, batch: Sequence[Event]) -> Any:
        """What dry-run shows as the body: the JSON document, or the lines of an ndjson one."""
        match self.options.format:
            case "events":
                return payload(batch)
            case "ndjson":
                return [event.data for event in batch]
            case _:
                return batch[0].data

    def _headers(self, body: bytes, uuids: list[str], timestamp: int) -> dict[str, str]:
        single = self.options.format == "single"
        headers = {
            "User-Agent": USER_AGENT,
            **self.options.headers,
            "Content-Type": "application/x-ndjson" if self.options.format == "ndjson"
            else "application/json",
            # One event: its own uuid, which a receiver may also have seen in the events format.
            IDEMPOTENCY_HEADER: uuids[0] if single else idempotency_key(uuids),
        }
        if self._secret is not None:
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        return headers


def payload(batch: Sequence[Event]) -> dict[str, Any]:
    """The JSON document a webhook receives."""
    return {"events": [event.to_dict() for event in batch]}


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``<timestamp>.<body>`` keyed by ``secret``."""
    digest = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def idempotency_key(uuids: Sequence[str]) -> str:
    """A stable key for this exact set of events: the same batch retried gets the same key."""
    joined = ",".join(sorted(uuids)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]
