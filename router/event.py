"""The event that flows ingest → pipeline → spool → delivery, and dotted field paths into it."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import orjson

_MISSING = object()
_CANONICAL_UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\Z")
_is_canonical = _CANONICAL_UUID.match
_dumps = orjson.dumps


class RequestContext:
    """What the request said about the sender, kept in memory only: never spooled or logged.

    ``client_ip`` exists for in-memory rate limits and geoip; nothing may write it anywhere.
    It is worked out when a filter first asks (``client_ip_of``), since most pipelines never
    do. Read-only by convention: a plain class with slots rather than a frozen dataclass, whose
    ``__init__`` (an ``object.__setattr__`` per field) made one context per request cost ~7k
    instructions (bench/README.md, round three).
    """

    __slots__ = ("_client_ip", "_client_ip_of", "dnt", "gpc", "token", "user_agent")

    def __init__(self, dnt: bool = False, gpc: bool = False, client_ip: str | None = None,
                 user_agent: str | None = None, token: str | None = None,
                 client_ip_of: Callable[[], str | None] | None = None) -> None:
        self.dnt = dnt  # Do Not Track: 1
        self.gpc = gpc  # Sec-GPC: 1 (Global Privacy Control)
        self._client_ip = client_ip
        self._client_ip_of = client_ip_of
        self.user_agent = user_agent
        self.token = token

    @property
    def client_ip(self) -> str | None:
        if self._client_ip_of is not None:
            self._client_ip, self._client_ip_of = self._client_ip_of(), None
        return self._client_ip

    def __repr__(self) -> str:  # never the address, the agent or the token
        return f"RequestContext(dnt={self.dnt}, gpc={self.gpc})"


@dataclass(slots=True)
class Event:
    """One beacon (or one PostHog event): a stable ``uuid``, when we got it, a name and its data.

    ``data`` holds the client's fields; dotted paths (``platform.os``) address it. ``context`` is
    the transient request context: present in the global pipeline, absent after the spool.
    """

    uuid: str
    received_at: str
    name: str
    data: dict[str, Any]
    source: str = "beacon"
    # The source profile that mapped it (router/sources): how to give it back in the client's
    # own shape. None for events no profile mapped.
    profile: str | None = None
    context: RequestContext | None = field(default=None, repr=False, compare=False)
    # Filters that remember something (dedupe) leave here how to forget it, run if the spool
    # refuses the event: a client's retry after a 503 must not be dropped as a duplicate.
    undo: list[Callable[[], None]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def new(cls, data: dict[str, Any], *, name: str = "beacon", source: str = "beacon",
            uuid: object = None, received_at: str | None = None,
            context: RequestContext | None = None, profile: str | None = None) -> Event:
        """An event stamped with the client's uuid when it is a valid one, else a fresh uuid4."""
        return cls(stamped(uuid), received_at or now_iso(), name, data, source, profile, context)

    def to_dict(self) -> dict[str, Any]:
        """The persisted form: what the spool and the backends see (no request context)."""
        out = {"uuid": self.uuid, "received_at": self.received_at, "event": self.name,
               "source": self.source, "data": self.data}
        if self.profile is not None:
            out["profile"] = self.profile
        return out

    def to_json(self) -> bytes:
        """``to_dict()`` as JSON (it starts with JSON_START: orjson keeps key order), with no
        call for the dict: this runs for every event the spool takes."""
        if self.profile is None:
            return _dumps({"uuid": self.uuid, "received_at": self.received_at,
                           "event": self.name, "source": self.source, "data": self.data})
        return _dumps({"uuid": self.uuid, "received_at": self.received_at, "event": self.name,
                       "source": self.source, "data": self.data, "profile": self.profile})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        d = orjson.loads(raw)
        return cls(uuid=d["uuid"], received_at=d["received_at"], name=d["event"],
                   data=d["data"], source=d.get("source", "beacon"), profile=d.get("profile"))

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path in ``data``, or ``default``."""
        value = get_path(self.data, path, _MISSING)
        return default if value is _MISSING else value


JSON_START = b'{"uuid":"'
"""How ``Event.to_json`` begins: code that handles spooled events undecoded relies on it."""


def as_to_json_writes(bodies: Sequence[bytes]) -> bool:
    """Whether every body is framed as ``to_json`` writes an event: ``JSON_START`` … ``}``.
    With ``map`` over the bytes methods the loop runs in C: delivery checks each batch."""
    return (all(map(bytes.startswith, bodies, repeat(JSON_START)))
            and all(map(bytes.endswith, bodies, repeat(b"}"))))


def uuid_of_json(body: bytes) -> str:
    """The uuid of an event's JSON: read off the front when ``to_json`` wrote it, else decoded
    (ValueError, KeyError or TypeError if it is not an event's JSON)."""
    if body.startswith(JSON_START) and body[45:46] == b'"':
        return body[9:45].decode()
    return str(orjson.loads(body)["uuid"])


def new_uuid() -> str:
    """A random (version 4) UUID in canonical text form, as ``str(uuid.uuid4())`` gives."""
    return _uuids.next()


# uuid.uuid4() makes one os.urandom call per uuid and builds a UUID object; on the ingest hot
# path that was ~10 % of the event loop's time. Here one call fetches the randomness of 256
# uuids. Each thread keeps its own pool, and a forked child (--workers) drops the one it
# inherited, so no two events ever share a uuid.
_UUIDS_PER_FETCH = 256
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits


def _uuid_stream() -> Iterator[str]:
    while True:
        block = os.urandom(16 * _UUIDS_PER_FETCH).hex()
        for i in range(0, 32 * _UUIDS_PER_FETCH, 32):
            h = block[i:i + 32]
            yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class _Uuids(threading.local):
    def __init__(self) -> None:
        self.next = _uuid_stream().__next__


_uuids = _Uuids()


def _new_stream_after_fork() -> None:
    # A forked worker must never repeat its parent's pooled randomness.
    _uuids.next = _uuid_stream().__next__


os.register_at_fork(after_in_child=_new_stream_after_fork)


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds and a ``Z``."""
    # Called for every request: the date and time of day are formatted once per second
    # (datetime.now().isoformat() was 3 % of the event loop's time under load).
    global _this_second
    now = time.time()
    second = int(now)
    cached = _this_second
    if cached[0] != second:
        cached = _this_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1000):03d}Z"


_this_second: tuple[int, str] = (-1, "")


def iso_z(moment: datetime, timespec: str = "milliseconds") -> str:
    """``moment`` in UTC as ISO 8601 with a ``Z`` (``2024-05-01T12:00:00.000Z``): the router's
    one spelling of a time, fixed width, so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def stamped(uuid: object) -> str:
    """An event's uuid: the client's when it is a valid one (canonical form), else a fresh one."""
    if type(uuid) is str and _is_canonical(uuid):  # what SDKs send: no call beyond the match
        return uuid
    return normalize_uuid(uuid) or new_uuid()


def normalize_uuid(value: object) -> str | None:
    """The canonical lowercase hyphenated form of a client-sent UUID, or None if it is not one."""
    if not isinstance(value, str):
        return None
    if _CANONICAL_UUID.match(value):  # what SDKs send: already canonical, no UUID object needed
        return value
    if not _UUID.match(value):
        return None
    return str(uuid_lib.UUID(value))


def split_path(path: str) -> tuple[str, ...]:
    """``"platform.os"`` → ``("platform", "os")``."""
    return tuple(path.split("."))


def get_path(data: Any, path: str | tuple[str, ...], default: Any = None) -> Any:
    """Walk a dotted path through nested dicts (and list indexes); ``default`` if absent."""
    parts = split_path(path) if isinstance(path, str) else path
    node = data
    for part in parts:
        if isinstance(node, dict):
            node = node.get(part, _MISSING)  # one lookup, not `in` and then `[]`
            if node is _MISSING:
                return default
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def has_path(data: Any, path: str | tuple[str, ...]) -> bool:
    return get_path(data, path, _MISSING) is not _MISSING


def set_path(data: dict[str, Any], path: str | tuple[str, ...], value: Any) -> None:
    """Set a dotted path, creating intermediate dicts; a non-dict in the way is replaced."""
    parts = split_path(path) if isinstance(path, str) else path
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def delete_path(data: dict[str, Any], path: str | tuple[str, ...]) -> bool:
    """Remove a dotted path; True if something was removed."""
    parts = split_path(path) if isinstance(path, str) else path
    parent = get_path(data, parts[:-1]) if len(parts) > 1 else data
    if isinstance(parent, dict) and parts[-1] in parent:
        del parent[parts[-1]]
        return True
    return False
