"""``type: webhook`` — POST each batch as JSON to a URL, signed with HMAC-SHA256.

Body, by ``format``: ``events`` (the default), ``{"events": [event.to_dict(), ...]}`` per batch;
``ndjson``, each event in its client's own shape (its source profile's ``unmap``) on a line of
its own, per batch; ``single``, one request per event in that shape, as the product's own
client posts it, for internal receivers that expect it.

With a ``secret``, the request carries ``X-Beacon-Timestamp: <unix seconds>`` and
``X-Beacon-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<timestamp> "." <exact body bytes>``
keyed by the secret; signing the timestamp lets a receiver reject replays. ``Idempotency-Key``
is derived from the batch's event uuids (``single``: the event's uuid), so a retried batch
carries the same key. See docs/backends.md for a receiver's verification code.

``signature: standard`` signs in the Standard Webhooks format (standardwebhooks.com) instead, so
receivers verify with its libraries: ``webhook-id`` (``msg_`` + the idempotency key, the same on
a retry), ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``, keyed by the ``whsec_<base64>`` secret's bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from ..config import Duration, masked
from ..event import Event, uuid_of_json
from ..sources import EMPTY, Profiles
from .base import Backend, Options, Request, SendResult, register
from .http import USER_AGENT, HttpClient

SIGNATURE_HEADER = "X-Beacon-Signature"
TIMESTAMP_HEADER = "X-Beacon-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Standard Webhooks (https://www.standardwebhooks.com/, spec/standard-webhooks.md)
STANDARD_ID = "webhook-id"
STANDARD_TIMESTAMP = "webhook-timestamp"
STANDARD_SIGNATURE = "webhook-signature"
STANDARD_SECRET_PREFIX = "whsec_"

# Headers the backend sets itself; letting config override them would break the signature.
_RESERVED = {
    "content-type",
    "content-length",
    "host",
    IDEMPOTENCY_HEADER.lower(),
    SIGNATURE_HEADER.lower(),
    TIMESTAMP_HEADER.lower(),
    STANDARD_ID,
    STANDARD_TIMESTAMP,
    STANDARD_SIGNATURE,
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
        None, description="signs each request: X-Beacon-Signature, HMAC-SHA256; empty: unsigned"
                          " (signature: standard: a whsec_<base64> secret)")
    format: Literal["events", "ndjson", "single"] = Field(
        "events", description="events: {\"events\": [...]} per batch; ndjson: each event's data "
        "on a line, per batch; single: one request per event, its data as the body")
    signature: Literal["beacon", "standard"] = Field(
        "beacon", description="beacon: X-Beacon-Signature; standard: Standard Webhooks headers "
                              "(webhook-id, webhook-timestamp, webhook-signature)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _standard_secret(self) -> WebhookOptions:
        if self.signature == "standard" and self.secret and self.secret.get_secret_value():
            standard_key(self.secret.get_secret_value())  # raises ValueError naming the problem
        return self

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
        self._standard = options.signature == "standard"
        self._secret = (standard_key(secret) if self._standard else secret.encode()) or None
        self._http = HttpClient(timeout=options.timeout)
        # The spool's bytes are the `events` body's parts; the other formats need each event.
        self.sends_spooled = options.format == "events"
        self._profiles = EMPTY

    def use_profiles(self, profiles: Profiles) -> None:
        self._profiles = profiles  # ndjson and single send each event in its product's shape

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
                body = b"".join(orjson.dumps(self.client_shape(e)) + b"\n" for e in batch)
            case "single":
                [event] = batch
                body = orjson.dumps(self.client_shape(event))
        return self._headers(body, [event.uuid for event in batch], timestamp), body

    def _shown_body(self, batch: Sequence[Event]) -> Any:
        """What dry-run shows as the body: the JSON document, or the lines of an ndjson one."""
        match self.options.format:
            case "events":
                return payload(batch)
            case "ndjson":
                return [self.client_shape(event) for event in batch]
            case _:
                return self.client_shape(batch[0])

    def client_shape(self, event: Event) -> dict[str, Any]:
        """The event's data as its product's client sent it, after the pipeline: the fields
        its source profile moved onto the common names moved back (docs/sources.md)."""
        profile = self._profiles.by_name.get(event.profile or "")
        return profile.unmap(event.data) if profile is not None else event.data

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
        if self._secret is None:
            return headers
        if self._standard:
            message_id = "msg_" + headers[IDEMPOTENCY_HEADER]
            headers[STANDARD_ID] = message_id
            headers[STANDARD_TIMESTAMP] = str(timestamp)
            headers[STANDARD_SIGNATURE] = sign_standard(self._secret, message_id, timestamp, body)
        else:
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


def sign_standard(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: HMAC-SHA256 of ``<id>.<timestamp>.<body>`` (Standard Webhooks)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def standard_key(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret, ``whsec_`` + base64 (the prefix optional);
    ValueError if it is no base64 or too short to be a key."""
    if not secret:
        return b""
    encoded = secret.removeprefix(STANDARD_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature: standard needs secret: whsec_ followed by base64 "
                         "(e.g. whsec_$(openssl rand -base64 32))") from None
    if len(key) < 24:  # the specification: 24 to 64 random bytes
        raise ValueError("signature: standard needs a secret of at least 24 bytes "
                         "(whsec_$(openssl rand -base64 32))")
    return key


def idempotency_key(uuids: Sequence[str]) -> str:
    """A stable key for this exact set of events: the same batch retried gets the same key."""
    joined = ",".join(sorted(uuids)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]
