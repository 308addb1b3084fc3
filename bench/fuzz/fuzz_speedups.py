"""Differential fuzzing of the C modules against their pure-Python twins.

The first byte picks one C function; the rest builds its arguments (nested values with str of
every width, lone surrogates, ints past 64 bits, floats incl. NaN, non-str keys, subclasses;
PostHog batches, mostly plain; timestamps near ``YYYY-MM-DDTHH:MM:SSZ``; HMAC keys and
messages) and asserts the relation each C function keeps with its twin:

- ``_speedups.nothing_to_redact(data)`` is sound: where it says True, the redact filter's walk
  (filters/redact.py) changes nothing. So must the text twin ``nothing_to_redact_text``.
- ``_speedups.exceeds_depth(doc, d)`` is ``shape.exceeds_depth_walk(doc, d)`` for 1 <= d <=
  1000; ValueError past that (OverflowError past a C long), TypeError for a doc that is not an
  exact dict or list or a depth that is not an int.
- ``_speedups.floor_utc_text(text, step)`` is ``RoundTime._floor_utc_text`` for the text that
  round_time hands it (an ASCII str of 20 characters ending in Z), None for any other; where it
  gives text, the datetime path gives the same. A step that does not divide a day: ValueError.
- ``_speedups.v0_events(docs, Captured)`` is None exactly when a batch is not plain (the C's
  rules, written out in ``plain`` below), else what ``posthog._v0_events_loop`` gives for it
  (names, data in key order, uuids, types, the very same objects), without editing ``docs``.
  Dict keys whose hash is that of a key the C looks up and whose ``__eq__`` raises or empties
  a container must give that exception or an answer, never a crash (run under ASan).
- ``_hmac.hexdigest(_hmac.keyed(key), message, length)`` is
  ``hmac.new(key, message, sha256).hexdigest()[:length]``, with privacy.py's errors:
  UnicodeEncodeError on a lone surrogate, TypeError, ValueError, OverflowError.

Imports router._speedups and router._hmac directly, and stops at once if they are not built.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import sys
from datetime import UTC, datetime
from typing import Any

import atheris
from common import main

with atheris.instrument_imports():
    from router.filters.redact import Redact, RedactOptions, nothing_to_redact_text
    from router.filters.round_time import RoundTime, RoundTimeOptions, parse_time
    from router.ingest import shape
    from router.ingest.posthog import Captured, _v0_events_loop

try:
    from router import _hmac, _speedups
except ImportError as exc:  # the point of this target is the C: never fall back silently
    sys.exit(f"fuzz_speedups: router/_speedups.c or router/_hmac.c is not built ({exc}); "
             "build them with `python setup.py build_ext --inplace`")
print(f"fuzz_speedups: {_speedups.__file__} {_hmac.__file__}", file=sys.stderr)

C_DEPTH_LIMIT = 1000  # _speedups.c MAX_LIMIT
C_LONG = (-(2**63), 2**63 - 1)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
REDACT = Redact(RedactOptions())


class Text(str):
    pass


class Bytes(bytes):
    pass


class Dict(dict):  # type: ignore[type-arg]
    pass


class List(list):  # type: ignore[type-arg]
    pass


class Hostile(Exception):
    """Raised by a Collider's __eq__: the only exception v0_events may pass on for it."""


class Collider:
    """A dict key with the hash of a str key the C looks up: its ``__eq__`` is Python code run
    inside the C's dict lookups. Action 0 answers False; 1 raises Hostile; 2 empties a
    container of the batch (the event, its properties or the batch itself) first; both only
    once armed (not while the batch is being built)."""

    def __init__(self, target: str, action: int, victim: Any = None) -> None:
        self.target, self.action, self.victim = target, action, victim
        self.armed = False

    def __hash__(self) -> int:
        return hash(self.target)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Collider):
            return (self.target, self.action) == (other.target, other.action)
        if self.action == 1 and self.armed:
            raise Hostile(self.target)
        if self.action == 2 and self.armed and self.victim is not None:
            self.victim.clear()
        return False

    def __repr__(self) -> str:
        return f"Collider({self.target!r}, {self.action})"


# --- values ---------------------------------------------------------------------------------------

# What the redact patterns look for: digits (ASCII, and Unicode digits of 2 and 4 bytes, which
# `\d` takes), hex, dots, colons, @, slashes; characters of every width; a lone surrogate.
PIECES = ["1", "7", "25", "192", "255", "٣", "\U0001d7d8", "a", "F", "ff", "fe80", ".", ":", "::",
          "@", "/", "://", "x", " ", '"', "\\", "http", "example", ".com", "10.0.0.1", "fe80::1",
          "a@b.io", "é", "€", "\U0001f600", "\ud800", "\x00", "\n", "-", "_", "%", "..", "1.2"]
ALPHABET = "0123456789abcdefABCDEF.:/@x -٣é€\U0001f600"
SAMPLES = ["admin@example.com", "https://ops.example.com/x", "10.0.0.1", "fe80::1", "::1",
           "2001:db8:0:0:0:0:0:1", "٣.٣.٣.٣", "::ffff:10.0.0.1", "1::", "2.4.3", "v2.4.3.x",
           "2025-11-28T00:10:11Z", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8", "std::vector", "a.b.c.d"]


def pick(fdp: Any, seq: Any) -> Any:
    return seq[fdp.ConsumeIntInRange(0, len(seq) - 1)]


def text(fdp: Any) -> str:
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return "".join(pick(fdp, PIECES) for _ in range(fdp.ConsumeIntInRange(0, 12)))
    if mode == 1:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 24))  # may hold lone surrogates
    if mode == 2:
        raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))
        return "".join(ALPHABET[b % len(ALPHABET)] for b in raw)
    return pick(fdp, SAMPLES)


def scalar(fdp: Any) -> Any:
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-1000, 1000)
    if kind == 3:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(9, 24))  # past 64 bits, mostly
    if kind == 4:
        return fdp.ConsumeFloat()  # NaN and infinities too
    if kind == 5:  # what the C does not know: "maybe"
        return pick(fdp, [Text("10.0.0.1"), Text("x"), ("a@b.io",), b"x", Bytes(b"::1"),
                          Dict(a="1.2.3.4"), List(["fe80::1"]), Dict(), List(), range(3)])
    return text(fdp)


def key(fdp: Any) -> Any:
    if fdp.ConsumeIntInRange(0, 15) == 0:  # a key that is not a str (YAML can make them)
        return pick(fdp, [1, 2.5, None, True, ("k",), -(2**70)])
    return text(fdp)


def tree(fdp: Any, depth: int = 0, keys: bool = True) -> Any:
    """A JSON-like value; containers down to depth 6, then a chain down to ~90 levels now and
    then (the C's redact walk stops at 64)."""
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind < 6 or depth >= 6 or fdp.remaining_bytes() < 4:
        return scalar(fdp)
    if kind == 9:
        value = tree(fdp, depth + 1, keys)
        for _ in range(fdp.ConsumeIntInRange(0, 90)):
            value = [value] if fdp.ConsumeBool() else {"k": value}
        return value
    size = fdp.ConsumeIntInRange(0, 5)
    if kind in (6, 7):
        return [tree(fdp, depth + 1, keys) for _ in range(size)]
    return {(key(fdp) if keys else text(fdp)): tree(fdp, depth + 1, keys) for _ in range(size)}


# --- nothing_to_redact ----------------------------------------------------------------------------

def check_redact(fdp: Any) -> None:
    top = fdp.ConsumeIntInRange(0, 9)
    data: Any
    if top == 0:
        data = tree(fdp)  # anything: a scalar too
    elif top == 1:
        data = [tree(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    else:  # an event's data: an object
        data = {key(fdp): tree(fdp) for _ in range(fdp.ConsumeIntInRange(0, 8))}
    before = copy.deepcopy(data)
    c_says = _speedups.nothing_to_redact(data)
    assert type(c_says) is bool, c_says
    if type(data) is not dict and type(data) is not list:
        assert c_says is False, data
        return
    assert data == before, "nothing_to_redact changed its argument"
    walked = copy.deepcopy(data)
    REDACT.redact(walked)
    if c_says:
        assert walked == data, ("C said nothing to redact", data, walked)
    if nothing_to_redact_text(data):  # type: ignore[arg-type]  # a list too: any JSON
        assert walked == data, ("text said nothing to redact", data, walked)


# --- exceeds_depth --------------------------------------------------------------------------------

def check_depth(fdp: Any) -> None:
    doc = tree(fdp, keys=False)
    chain = 0
    if fdp.ConsumeBool():  # a chain around it, up to past the C's 1,000 levels
        chain = fdp.ConsumeIntInRange(0, 1100)
        for _ in range(chain):
            doc = [doc] if fdp.ConsumeBool() else {"k": doc}
    if fdp.ConsumeIntInRange(0, 15) == 0 and type(doc) is list:
        doc.append(doc)  # one cycle: both walks stop at max_depth
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        max_depth: Any = fdp.ConsumeIntInRange(1, 12)
    elif mode == 1:
        max_depth = max(1, chain + fdp.ConsumeIntInRange(-3, 3))
    elif mode == 2:
        max_depth = fdp.ConsumeIntInRange(1, 1000)
    else:
        max_depth = pick(fdp, [0, -1, 999, 1000, 1001, 5000, 2**63 - 1, 2**63, -(2**63) - 1,
                               2**100, True, False, 3.0, "3", None])
    expected: Any
    if type(max_depth) is not int and type(max_depth) is not bool:
        expected = TypeError
    elif not C_LONG[0] <= max_depth <= C_LONG[1]:
        expected = OverflowError
    elif not 1 <= max_depth <= C_DEPTH_LIMIT:
        expected = ValueError
    elif type(doc) is not dict and type(doc) is not list:
        expected = TypeError
    else:
        expected = shape.exceeds_depth_walk(doc, max_depth)
    try:
        found: Any = _speedups.exceeds_depth(doc, max_depth)
    except (TypeError, ValueError, OverflowError) as exc:
        found = type(exc)
    assert found is expected, (found, expected, max_depth, chain)


# --- floor_utc_text -------------------------------------------------------------------------------

DIVISORS = [d for d in range(1, 86401) if 86400 % d == 0]
ROUND_TIMES: dict[int, RoundTime] = {}
STAMP_CHARS = "0123456789-T:Z +.,٣xé\x00t z\U0001f600"
YEARS = [1, 4, 100, 400, 1900, 2000, 2023, 2024, 9999, 0]


def round_time(step: int) -> RoundTime:
    found = ROUND_TIMES.get(step)
    if found is None:  # kept: its table of times of day fills as round_time's does
        found = ROUND_TIMES[step] = RoundTime(RoundTimeOptions(to=step))  # type: ignore[arg-type]
    return found


def stamp(fdp: Any) -> Any:
    mode = fdp.ConsumeIntInRange(0, 7)
    if mode == 6:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(18, 22))
    if mode == 7:
        return pick(fdp, [None, 1732752000, b"2025-11-28T10:00:00Z", 1.5,
                          Text("2025-11-28T10:00:00Z"), "2025-11-28T10:00:00+00:00"])
    year = pick(fdp, YEARS) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 9999)
    value = (f"{year:04d}-{fdp.ConsumeIntInRange(0, 13):02d}-{fdp.ConsumeIntInRange(0, 32):02d}"
             f"T{fdp.ConsumeIntInRange(0, 25):02d}:{fdp.ConsumeIntInRange(0, 61):02d}"
             f":{fdp.ConsumeIntInRange(0, 61):02d}Z")
    for _ in range(mode if mode < 4 else 0):  # 0 to 3 edits
        at = fdp.ConsumeIntInRange(0, len(value))
        edit = fdp.ConsumeIntInRange(0, 3)
        if edit == 0:
            value = value[:at] + value[at + 1:]
        elif edit == 1:
            value = value[:at] + pick(fdp, STAMP_CHARS) + value[at:]
        else:
            value = value[:at] + pick(fdp, STAMP_CHARS) + value[at + 1:]
    return value


def check_floor(fdp: Any) -> None:
    value = stamp(fdp)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        step: Any = pick(fdp, [0, -1, 7, 86401, 172800, 2**63, -(2**64), 60.0, "60", None, True])
    else:
        step = pick(fdp, DIVISORS)
    expected: Any
    if type(step) is not int and type(step) is not bool:
        expected = TypeError
    elif not C_LONG[0] <= step <= C_LONG[1]:
        expected = OverflowError
    elif step < 1 or 86400 % step:
        expected = ValueError
    elif (type(value) is str and len(value) == 20 and value[19] == "Z" and value.isascii()):
        expected = round_time(int(step))._floor_utc_text(value)
    else:
        expected = None
    try:
        found: Any = _speedups.floor_utc_text(value, step)
    except (TypeError, ValueError, OverflowError) as exc:
        found = type(exc)
    assert found == expected and type(found) is type(expected), (value, step, found, expected)
    if type(found) is str:  # and the datetime path round_time takes for any other text
        dt = parse_time(value)
        assert dt is not None, value
        dt = dt.astimezone(UTC)
        s = dt.hour * 3600 + dt.minute * 60 + dt.second
        s -= s % step
        general = (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
                   f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z")
        assert found == general, (value, step, found, general)


# --- v0_events ------------------------------------------------------------------------------------

NAMES = ["e", "$pageview", " $pageview", "é", " ", "", "\u00a0", "\u2003x", "\x1c", "\u200b",
         "\U0001f600", "\ud800"]
IDS = ["u1", " u2 ", "\u00a0x", "", " ", "\u3000", "5eed0000-0001-4a1e-9f3c-000000000001"]
STAMPS = ["2025-11-28T00:10:11Z", "", "not a time"]
TOP_KEYS = ["event", "distinct_id", "timestamp", "properties", "uuid"]
LOOKED_UP = ["event", "properties", "distinct_id", "timestamp", "uuid", "$set", "$set_once",
             "token", "$token", "$ip"]
PLAIN_PROPERTY_KEYS = ["$lib", "n", "distinct_id", "$lib_version", "a", "$current_url"]
ODD_PROPERTY_KEYS = ["token", "$token", "$ip", "$set", "$set_once"]
ODD: list[Any] = [None, 0, 1.5, True, [], {}, Text("e"), " ", Dict(), "x", List()]


def fresh(fdp: Any, pool: list[str]) -> str:
    """A str from the pool, or a new one from the fuzz bytes (held by the event alone, so a
    use after free under ASan shows at once)."""
    if fdp.ConsumeBool():
        return pick(fdp, pool)  # type: ignore[no-any-return]
    return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 8)) + "x" * fdp.ConsumeIntInRange(0, 1)


def properties(fdp: Any) -> Any:
    if fdp.ConsumeIntInRange(0, 7) == 0:
        return None
    return {pick(fdp, PLAIN_PROPERTY_KEYS): tree(fdp, 3)
            for _ in range(fdp.ConsumeIntInRange(0, 4))}


def event(fdp: Any, hostile: list[Collider], batch: list[Any]) -> Any:
    raw: Any = {"event": fresh(fdp, NAMES), "distinct_id": fresh(fdp, IDS),
                "timestamp": fresh(fdp, STAMPS), "properties": properties(fdp)}
    if fdp.ConsumeBool():
        raw["uuid"] = pick(fdp, ["u-1", None, 7, Text("u-2"), "", "\ud800"])
    if fdp.ConsumeIntInRange(0, 3) == 0:
        raw[pick(fdp, ["offset", "other", "$distinct_id", "api_key", "token"])] = scalar(fdp)
    # mostly plain; now and then made not quite so
    for _ in range(max(0, fdp.ConsumeIntInRange(-6, 3))):
        props = raw.get("properties")
        op = fdp.ConsumeIntInRange(0, 8)
        if op == 0:
            raw.pop(pick(fdp, TOP_KEYS), None)
        elif op == 1:
            raw[pick(fdp, TOP_KEYS)] = copy.copy(pick(fdp, ODD))  # never a shared one
        elif op == 2:
            raw[pick(fdp, ["$set", "$set_once"])] = pick(fdp, [{"a": 1}, None, 3, {}])
        elif op == 3 and type(props) is dict:
            props[pick(fdp, ODD_PROPERTY_KEYS)] = pick(fdp, [{"a": 1}, None, "phc_x", 3])
        elif op == 4:
            raw["properties"] = pick(fdp, [Dict(n=1), ["x"], "x", 0])
        elif op == 5:
            where = props if type(props) is dict and fdp.ConsumeBool() else raw
            where[pick(fdp, [1, None, ("event",), 2.5, Collider(pick(fdp, LOOKED_UP), 0)])] = 1
        elif op == 6:
            raw = Dict(raw)
        elif op == 7 and type(raw) is dict:  # Python code inside the C's lookups
            action = fdp.ConsumeIntInRange(1, 2)
            victim = pick(fdp, [raw, props if type(props) is dict else raw, batch])
            collider = Collider(pick(fdp, LOOKED_UP), action, victim)
            hostile.append(collider)
            where = props if type(props) is dict and fdp.ConsumeBool() else raw
            where[collider] = 1
        elif op == 8:
            return pick(fdp, [None, [], "e"])  # not an object at all
    return raw


def plain(raw: Any) -> bool:
    """Whether the C takes this event: an exact dict with a named, identified, timed (str)
    event, properties an exact dict or null or none, and nothing to scrub or lift."""
    if type(raw) is not dict:
        return False
    name, props = raw.get("event"), raw.get("properties")
    distinct_id, timestamp = raw.get("distinct_id"), raw.get("timestamp")
    if type(name) is not str or not name.strip():
        return False
    if props is not None and type(props) is not dict:
        return False
    if type(distinct_id) is not str or not distinct_id.strip() or type(timestamp) is not str:
        return False
    if "$set" in raw or "$set_once" in raw:
        return False
    return props is None or not any(k in props for k in ODD_PROPERTY_KEYS)


def _shape(e: Any) -> Any:
    return (type(e), type(e.name), e.name, type(e.data), list(e.data.items()), type(e.uuid),
            e.uuid)


def check_v0(fdp: Any) -> None:
    hostile: list[Collider] = []
    docs: list[Any] = []
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        docs.append(event(fdp, hostile, docs))
    if hostile:  # an answer or Hostile, and no crash (ASan watches the memory)
        for collider in hostile:
            collider.armed = True
        try:
            found = _speedups.v0_events(docs, Captured)
        except Hostile:
            return
        assert found is None or all(type(e) is Captured for e in found), found
        return
    before = copy.deepcopy(docs)
    found = _speedups.v0_events(docs, Captured)
    assert docs == before, "v0_events changed its argument"
    if found is None:
        assert not all(plain(raw) for raw in docs), ("a plain batch refused", docs)
        return
    assert all(plain(raw) for raw in docs), ("a batch that is not plain taken", docs)
    twin = copy.deepcopy(docs)
    expected = _v0_events_loop(twin, False, NOW, None)  # a batch with its own token
    assert twin == before, "the loop edited a batch the C took as plain"
    assert type(found) is list and len(found) == len(docs), found
    assert [_shape(e) for e in found] == [_shape(e) for e in expected], (found, expected)
    for e, raw in zip(found, docs, strict=True):  # the very objects of the batch, as the loop
        assert e.name is raw["event"] and e.data["distinct_id"] is raw["distinct_id"]
        assert e.data["timestamp"] is raw["timestamp"]
        if raw.get("properties") is not None:
            assert e.data["properties"] is raw["properties"]
        uuid = raw.get("uuid")
        assert e.uuid is (uuid if isinstance(uuid, str) else None), (e.uuid, uuid)


# --- HMAC -----------------------------------------------------------------------------------------

KEYED_SIZE = len(_hmac.keyed(b""))  # the two SHA-256 states


def check_hmac(fdp: Any) -> None:
    key_bytes = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 150))  # past the 64-byte block too
    key_form = fdp.ConsumeIntInRange(0, 7)
    key_arg: Any = {0: bytearray(key_bytes), 1: memoryview(key_bytes), 2: Bytes(key_bytes),
                    3: key_bytes.decode("latin-1"), 4: None}.get(key_form, key_bytes)
    try:
        state: Any = _hmac.keyed(key_arg)
    except TypeError:
        assert key_form in (3, 4), key_form
        return
    assert key_form not in (3, 4), key_form
    assert type(state) is bytes
    if fdp.ConsumeIntInRange(0, 15) == 0:
        state = pick(fdp, [state[:-1], state + b"\0", bytearray(state), Bytes(state), "x", None])
    length: Any = fdp.ConsumeIntInRange(1, 64)
    if fdp.ConsumeIntInRange(0, 11) == 0:
        length = pick(fdp, [0, -1, 65, 2**63, -(2**64), 64.0, "8", True])
    form = fdp.ConsumeIntInRange(0, 9)
    if form < 4:
        message: Any = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 300))  # surrogates too
    elif form < 7:
        message = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    elif form == 7:
        message = Text(text(fdp)) if fdp.ConsumeBool() else Bytes(fdp.ConsumeBytes(8))
    else:
        message = pick(fdp, [bytearray(b"x"), memoryview(b"x"), 1, None, ["x"]])
    expected: Any
    if (type(state) is not bytes or len(state) != KEYED_SIZE
            or (type(length) is not int and type(length) is not bool)):
        expected = TypeError
    elif not C_LONG[0] <= length <= C_LONG[1]:
        expected = OverflowError
    elif not 1 <= length <= 64:
        expected = ValueError
    elif not isinstance(message, str | bytes):
        expected = TypeError
    else:
        try:
            data = message.encode("utf-8") if isinstance(message, str) else message
        except UnicodeEncodeError:
            expected = UnicodeEncodeError
        else:
            expected = hmac.new(bytes(key_bytes), data, hashlib.sha256).hexdigest()[:length]
    try:
        found: Any = _hmac.hexdigest(state, message, length)
    except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        found = type(exc)
    assert found == expected and type(found) is type(expected), (found, expected)


CHECKS = (check_redact, check_depth, check_floor, check_v0, check_v0, check_hmac)


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    CHECKS[fdp.ConsumeIntInRange(0, len(CHECKS) - 1)](fdp)


if __name__ == "__main__":
    for function in (text, scalar, key, tree, check_redact, check_depth, stamp, check_floor,
                     event, plain, check_v0, check_hmac):
        atheris.instrument_func(function)
    main(check)
