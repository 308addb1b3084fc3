"""Privacy filters: hash (keyed HMAC) and bucket (exact numbers → ranges); redact and round_time
have modules of their own, and so has the hash's generated key file (hash_key.py)."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import math
import re
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..event import _MISSING, Event, get_path, set_path, split_path
from ..speedups import hmac as c_hmac
from .base import Filter, Options, register
from .fields import FieldPath
from .hash_key import MIN_KEY, load_or_create_key
from .wildcard import KEEP, Place


def canonical_bytes(value: Any) -> bytes:
    """The bytes a value is hashed by: a string as itself, anything else as compact JSON.

    So ``"abc"`` hashes like ``HMAC(key, "abc")`` computed anywhere else, and ``37`` like ``"37"``.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        return str(value).encode("utf-8")


# --- hash ----------------------------------------------------------------------------------------

def _builtin_sha256() -> Callable[..., Any]:
    """CPython's own SHA-256 where there is one (module ``_sha2``, ``_sha256`` before 3.12), as
    hashlib itself falls back to: copying its state copies a struct, where an OpenSSL context's
    copy costs ~2,000 instructions more per HMAC. Else hashlib's. The digests are the same."""
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


_sha256 = _builtin_sha256()

_BLOCK = 64  # SHA-256's block size, in bytes
_IPAD = bytes(b ^ 0x36 for b in range(256))  # translate tables: each key byte XOR the pad
_OPAD = bytes(b ^ 0x5C for b in range(256))


class HashOptions(Options):
    """``fields``, ``key`` (or a generated ``key_file``) and the hex ``length`` kept."""

    fields: list[FieldPath] = Field(
        min_length=1, description="paths whose values are hashed; `*` is any key (counts.*)")
    key: SecretStr | None = Field(
        None, description="the HMAC key, at least 16 characters (openssl rand -hex 32); never "
                          "logged. Changing it changes every hash")
    key_file: str = Field("./data/hash.key",
                          description="read when `key` is empty; created (0600) if missing")
    length: int = Field(64, ge=8, le=64, description="hex characters kept")

    @field_validator("key", mode="before")
    @classmethod
    def _unset_is_none(cls, v: object) -> object:
        # `key: "${BEACON_HASH_KEY}"` expands to "" when the variable is unset: use the key file.
        return None if v == "" else v

    @field_validator("key")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < MIN_KEY:
            raise ValueError(
                f"must be at least {MIN_KEY} characters (generate one with `openssl rand -hex 32`)"
            )
        return v


@register
class Hash(Filter):
    """Replace values with a keyed HMAC-SHA256 (hex): stable, and unlinkable without the key."""

    type = "hash"
    Options = HashOptions

    def __init__(self, options: HashOptions) -> None:
        super().__init__(options)
        key = (
            options.key.get_secret_value().encode("utf-8")
            if options.key is not None
            else load_or_create_key(options.key_file)
        )
        # HMAC-SHA256 is sha256(key ^ opad || sha256(key ^ ipad || message)) (RFC 2104): the
        # two keyed states are hashed once here and copied per value, which costs about half
        # of copying an hmac object (whose copy and hexdigest are Python code over OpenSSL
        # contexts). The output is HMAC's, byte for byte (tests/filters/test_compiled_pipeline.py).
        if len(key) > _BLOCK:
            key = _sha256(key).digest()
        block = key.ljust(_BLOCK, b"\0")
        self._inner = _sha256(block.translate(_IPAD))
        self._outer = _sha256(block.translate(_OPAD))
        # The same two states on OpenSSL's SHA-256 (router/_hmac.c), where it was built: ~4
        # times cheaper a value (bench/README.md, "Round six"). None: the Python above.
        self._keyed = c_hmac.keyed(key) if c_hmac is not None else None
        self._places = [Place(split_path(p)) for p in options.fields]
        self._length = options.length

    def digest(self, value: Any) -> str:
        """The hex HMAC of a value's canonical bytes, truncated to ``length``."""
        if self._keyed is not None:
            return c_hmac.hexdigest(  # type: ignore[union-attr]
                self._keyed, value if type(value) is str else canonical_bytes(value),
                self._length)
        inner = self._inner.copy()
        inner.update(value.encode("utf-8") if type(value) is str else canonical_bytes(value))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[: self._length]

    def _hashed(self, value: Any) -> Any:
        return KEEP if value is None else self.digest(value)  # null carries nothing to hide

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        # The last text hashed at a top-level key, and its hash: a profile that copies a field
        # (PostHog's distinct_id to installation_id, `keep: true`) leaves the very same str
        # object at both keys, hashed once (an HMAC is ~10k instructions). Text only: it is
        # immutable, so the same object has the same bytes.
        last, last_hash = None, ""
        for place in self._places:
            key = place.head
            if key is not None and key not in data:
                continue
            if key is None or not place.single:
                place.replace(data, self._hashed)
                continue
            value = data[key]
            if value is last and last is not None:
                data[key] = last_hash
            elif value is not None and self._keyed is not None:  # digest(), inline
                data[key] = hashed = c_hmac.hexdigest(  # type: ignore[union-attr]
                    self._keyed, value if type(value) is str else canonical_bytes(value),
                    self._length)
                if type(value) is str:
                    last, last_hash = value, hashed
            elif value is not None:  # digest(), inline: installation_id in every event
                inner = self._inner.copy()
                inner.update(value.encode("utf-8") if type(value) is str
                             else canonical_bytes(value))
                outer = self._outer.copy()
                outer.update(inner.digest())
                data[key] = hashed = outer.hexdigest()[: self._length]
                if type(value) is str:
                    last, last_hash = value, hashed
        return event


# --- bucket --------------------------------------------------------------------------------------

Number = int | float
_MAX_TABLE = 10_000  # whole numbers labelled in advance, at most
_NUMERIC = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)


def as_number(value: Any) -> Number | None:
    """A finite number from a number or a numeric string; None for anything else (incl. bools)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64 and _NUMERIC.fullmatch(value):
        text = value.strip()
        try:
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _fmt(x: Number) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def default_labels(edges: list[Number]) -> tuple[list[str], str | None]:
    """Labels for the ``len(edges) + 1`` buckets, plus the label for values below 0 (or None).

    Edges are inclusive upper bounds. All-integer edges describe whole numbers: ``[10, 50, 200]``
    → ``0-10, 11-50, 51-200, 201+`` and ``<0``. Any float edge switches to ``0-0.5, 0.5-1.5,
    >1.5`` (each range excludes its lower end). A negative first edge makes the first label
    ``<=-10`` and leaves no ``<0`` bucket.
    """
    integral = all(isinstance(e, int) for e in edges)
    first, last = edges[0], edges[-1]
    below = "<0" if first >= 0 else None
    labels = [
        f"0-{_fmt(first)}" if first > 0 else _fmt(first) if first == 0 else f"<={_fmt(first)}"
    ]
    for lo, hi in itertools.pairwise(edges):
        if integral:
            labels.append(_fmt(hi) if lo + 1 == hi else f"{_fmt(lo + 1)}-{_fmt(hi)}")
        else:
            labels.append(f"{_fmt(lo)}-{_fmt(hi)}")
    labels.append(f"{_fmt(last + 1)}+" if integral else f">{_fmt(last)}")
    return labels, below


class BucketOptions(Options):
    """``field`` or ``fields``, strictly increasing ``edges``, optional ``labels`` / ``target``."""

    field: FieldPath | None = Field(None, description="one path (or `fields`); `*` is any key")
    fields: list[FieldPath] | None = Field(None, min_length=1,
                                           description="several paths sharing the edges")
    edges: list[int | float] = Field(
        min_length=1, description="strictly increasing inclusive upper bounds: [10, 50] → "
                                  "0-10, 11-50, 51+")
    labels: list[str] | None = Field(None, description="own names, one more than `edges`")
    target: FieldPath | None = Field(
        None, description="write the label here and keep the number (with `field` only, "
                          "without `*`)")

    @field_validator("edges", mode="before")
    @classmethod
    def _numbers_only(cls, v: object) -> object:
        if isinstance(v, list):
            for i, e in enumerate(v):
                if isinstance(e, bool) or not isinstance(e, int | float) or not math.isfinite(e):
                    raise ValueError(f"edge {i} ({e!r}) is not a finite number")
        return v

    @field_validator("edges")
    @classmethod
    def _increasing(cls, v: list[Number]) -> list[Number]:
        for i, (a, b) in enumerate(itertools.pairwise(v)):
            if not a < b:
                raise ValueError(f"must be strictly increasing; edge {i + 1} ({b}) follows {a}")
        return v

    @field_validator("labels")
    @classmethod
    def _one_per_bucket(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        edges = info.data.get("edges")
        if v is not None and edges is not None and len(v) != len(edges) + 1:
            raise ValueError(f"needs {len(edges) + 1} labels (one more than edges), got {len(v)}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> BucketOptions:
        if (self.field is None) == (self.fields is None):
            raise ValueError("give exactly one of `field` or `fields`")
        if self.target is not None and self.fields is not None and len(self.fields) > 1:
            raise ValueError("`target` needs a single `field`")
        if self.target is not None and "*" in self.paths[0].split("."):
            raise ValueError("`target` needs a `field` without `*`")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.field] if self.field is not None else list(self.fields or [])


@register
class Bucket(Filter):
    """Replace exact numbers by the range they fall in: with edges [10, 50, 200], 37 → "11-50"."""

    type = "bucket"
    Options = BucketOptions

    def __init__(self, options: BucketOptions) -> None:
        super().__init__(options)
        self._edges = list(options.edges)
        labels, below = (
            (list(options.labels), None)
            if options.labels is not None
            else default_labels(self._edges)
        )
        self.labels: tuple[str, ...] = tuple(labels)
        """One label per bucket, lowest first: bucket i holds edges[i-1] < value <= edges[i]."""
        self.below_label: str | None = below
        """The label of values below 0 when the default labels start at 0, else None."""
        self._places = [Place(split_path(p)) for p in options.paths]
        self._target = split_path(options.target) if options.target is not None else None
        # The label of each whole number from 0 to the last edge, looked up by index: counts
        # are such numbers, and an index costs less than bisect's call. Anything above the
        # last edge is in the last bucket; with a last edge below 0 or huge, no table.
        last = self._edges[-1]
        self._by_int: tuple[str, ...] = tuple(
            self.labels[bisect_left(self._edges, i)] for i in range(int(last) + 1)
        ) if 0 <= last <= _MAX_TABLE else ()

    def label(self, value: Any) -> str | None:
        """The bucket label of a number or numeric string; None when the value is not one."""
        number = as_number(value)
        if number is None:
            return None
        if self.below_label is not None and number < 0:
            return self.below_label
        # bisect_left finds i with edges[i-1] < number <= edges[i]: edges are upper bounds.
        return self.labels[bisect_left(self._edges, number)]

    def _labelled(self, value: Any) -> Any:
        if type(value) is int and value >= 0:  # most counts: label() without its calls
            return (self._by_int[value] if value < len(self._by_int)
                    else self.labels[bisect_left(self._edges, value)])
        label = self.label(value)
        return KEEP if label is None else label

    def _label_all(self, node: dict[str, Any]) -> None:
        # _labelled inline, for every value of one object (counts.*): no call per count.
        by_int, known = self._by_int, len(self._by_int)
        for key, value in node.items():
            if type(value) is int and 0 <= value < known:
                node[key] = by_int[value]
            else:
                label = self.label(value)
                if label is not None:
                    node[key] = label

    def __call__(self, event: Event) -> Event | None:
        data = event.data
        if self._target is not None:  # one `field`, without `*`
            value = get_path(data, self._places[0].path, _MISSING)
            label = None if value is _MISSING else self.label(value)
            if label is not None:
                set_path(data, self._target, label)
            return event
        for place in self._places:
            key = place.head
            if key is not None and key not in data:
                continue
            if key is None or not place.single:
                place.replace(data, self._labelled, self._label_all)
                continue
            label = self._labelled(data[key])
            if label is not KEEP:
                data[key] = label
        return event
