"""The configuration's shape: one pydantic model per section, the filter and backend specs.

What a config file may say and what each key means lives here; reading a file and checking it
against these models is :mod:`router.config.loader`'s work. Every model forbids unknown keys.
"""

from __future__ import annotations

import builtins
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from ..conditions import Condition
from ..sources import EMPTY, ProfileConfig, Profiles
from ..units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in YAML as ``250ms``, ``2s``, ``10m``, ``72h`` or ``400d``."""
Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in YAML as ``512KiB``, ``1MiB`` or ``10MB``."""


def _empty_is_false(value: object) -> object:
    # `enabled: "${POSTHOG_API_KEY:+true}"` expands to "" when the variable is unset.
    return False if value == "" or value is None else value


Switch = Annotated[bool, BeforeValidator(_empty_is_false)]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServerConfig(Strict):
    """``server:`` — the ingest listener and its limits."""

    listen: str = Field("0.0.0.0:8080", description="host:port to accept beacons on")
    max_body: Size = Field(1024 * 1024, description="largest request body, as sent (413 beyond)")
    max_decompressed: Size = Field(8 * 1024 * 1024,
                                   description="largest body after gzip/deflate/zstd (413 beyond)")
    max_events: int = Field(1000, gt=0, description="events per request")
    max_depth: int = Field(32, gt=0, description="JSON nesting depth")
    request_timeout: Duration = Field(10.0, description="time a body may take to arrive (408)")
    header_timeout: Duration = Field(10.0, gt=0, description="time a request's headers may "
                                     "take to arrive, from its first byte (408, closed)")
    shutdown_timeout: Duration = Field(10.0, description="time to finish requests and sends")
    drain_delay: Duration = Field(0.0, description="readyz fails this long before we stop")
    workers: int = Field(1, ge=1, le=256, description="processes sharing the port (SO_REUSEPORT)")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        split_listen(v)
        return v

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` / ``"[::]:8080"`` / ``":8080"`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 0.0.0.0:8080)")
    return host.strip("[]") or "0.0.0.0", int(port)


class SpoolConfig(Strict):
    """``spool:`` — where accepted events wait, durably, until every backend has them."""

    type: Literal["sqlite", "redis"] = Field(
        "sqlite", description="sqlite: a local file; redis: a stream several routers share")
    path: str = Field("./data/spool.db", description="type: sqlite: the database file")
    url: str | None = Field(None, validate_default=True,
                            description="type: redis: redis://, rediss:// or unix:// URL")
    stream: str = Field("beacons", description="type: redis: the stream's name")
    max_size: Size | None = Field(None, gt=0,
                                  description="bytes on disk before `when_full` applies; none: "
                                              "no cap")
    reserve: Size = Field(8 * 1024 * 1024, ge=0,
                          description="type: sqlite: disk space held back (a file beside the "
                                      "spool) so a full disk can still be compacted; 0: none")
    when_full: Literal["reject", "drop_oldest"] = Field(
        "reject", description="reject: answer 503 with Retry-After; drop_oldest (sqlite): delete "
                              "the oldest events, lost to every backend")
    # type: redis only (docs/scaling.md)
    max_events: int | None = Field(None, gt=0, description="stream length that answers 503")
    key_prefix: str = Field("beacon-router", pattern=r"^[A-Za-z0-9_.:{}-]{1,100}$",
                            description="type: redis: prefix of every key")
    consumer: str | None = Field(None, description="this process's name; default host:pid")
    claim_idle: Duration = Field(30.0, gt=0, description="unacked this long: a dead consumer's")
    max_deliveries: int = Field(10, gt=0, description="deliveries before a poison entry's DLQ")

    @field_validator("url")
    @classmethod
    def _redis_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("type") == "redis":
            raise ValueError("required for type: redis (e.g. redis://127.0.0.1:6379/0)")
        if v is not None and not re.match(r"^rediss?://|^unix://", v):
            raise ValueError("must be a redis:// or rediss:// URL")
        return v

    @field_validator("when_full")
    @classmethod
    def _drop_oldest_on_sqlite_only(cls, v: str, info: ValidationInfo) -> str:
        # Trimming a shared stream would drop entries other instances hold unacked.
        if v == "drop_oldest" and info.data.get("type") == "redis":
            raise ValueError("drop_oldest is only available with type: sqlite")
        return v

    @field_validator("max_events")
    @classmethod
    def _max_events_on_redis_only(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and info.data.get("type") == "sqlite":
            raise ValueError("only available with type: redis; use max_size with sqlite")
        return v


class PostHogSourceConfig(Strict):
    """``sources.posthog:`` — the PostHog capture API, for apps that already use a PostHog SDK."""

    enabled: Switch = Field(True, description="serve PostHog's capture paths")
    tokens: tuple[str, ...] = Field(
        (), description="project tokens allowed to write; empty: any token, or none")
    cors_origins: tuple[str, ...] = Field(
        (), description="browser origins answered with CORS headers; \"*\": any")

    @field_validator("tokens")
    @classmethod
    def _no_empty_token(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not t.strip() for t in v):
            raise ValueError("a token is empty (is its ${VARIABLE} unset?)")
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for origin in v:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"{origin[:64]!r} is not an origin: write scheme://host[:port] "
                                 "with no path, e.g. https://app.example.com, or \"*\"")
        return v


class BeaconSourceConfig(Strict):
    """``sources.beacon:`` — ``POST /beacon``; with ``tokens`` set, only their holders write."""

    tokens: tuple[SecretStr, ...] = Field(
        (), description="sent as `Authorization: Bearer TOKEN`; empty: anyone may send")

    @field_validator("tokens")
    @classmethod
    def _no_empty_token(cls, v: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(not t.get_secret_value().strip() for t in v):
            raise ValueError("a token is empty (is its ${VARIABLE} unset?)")
        return v


class SourcesConfig(Strict):
    """``sources:`` — the ingest APIs: ``POST /beacon`` and PostHog's capture API."""

    beacon: BeaconSourceConfig = Field(BeaconSourceConfig(), description="`POST /beacon`")
    posthog: PostHogSourceConfig = Field(PostHogSourceConfig(),
                                         description="the PostHog capture API")
    include: tuple[str, ...] = Field(
        (), description="profile files (globs, relative to the working directory), e.g. "
                        "config/sources/*.yaml; docs/sources.md")
    profiles: tuple[ProfileConfig, ...] = Field(
        (), description="your own profiles; one named like an included one replaces it")


class RateLimitConfig(Strict):
    """A token bucket: ``rate`` per ``per`` on average, bursts of up to ``burst``."""

    rate: float = Field(gt=0, description="tokens added per `per`")
    per: Duration = Field(1.0, gt=0, description="the period `rate` is counted over")
    burst: int | None = Field(None, gt=0, description="default: rate, at least 1")


class LimitsConfig(Strict):
    """``limits:`` — ingest rate limits; token buckets of digests (in Redis on a Redis spool)."""

    per_ip: RateLimitConfig | None = Field(None, description="requests per client IP")
    per_installation: RateLimitConfig | None = Field(
        None, description="events per installation id (before the pipeline hashes it)")
    installation_field: str = Field("installation_id",
                                    description="the field `per_installation` counts by")
    trusted_proxies: tuple[str, ...] = Field(
        (), description="proxies (CIDRs) whose X-Forwarded-For names the client")
    max_tracked: int = Field(100_000, gt=0, description="buckets per limit; LRU beyond")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for network in v:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network[:64]!r} is not an IP network "
                                 "(e.g. 10.0.0.0/8 or 192.0.2.1)") from None
        return v


class AdminConfig(Strict):
    """``admin:`` — the operator's endpoints; all of them answer 404 while ``token`` is unset."""

    token: SecretStr | None = Field(
        None, description="`Authorization: Bearer TOKEN`, compared in constant time; unset: "
                          "every admin path answers 404")
    listen: str = Field("127.0.0.1:8081", description="host:port of the admin listener, or "
                                                      "`same` to serve it on the ingest port")

    @field_validator("listen")
    @classmethod
    def _host_port_or_same(cls, v: str) -> str:
        if v != "same":
            split_listen(v)
        return v

    @field_validator("token")
    @classmethod
    def _no_empty_token(cls, v: SecretStr | None) -> SecretStr | None:
        # `token: "${ADMIN_TOKEN}"` with the variable unset means "off", not "empty password".
        return v if v is not None and v.get_secret_value().strip() else None


class StatsConfig(Strict):
    """``stats:`` — the installed base read back from a ``store`` backend (docs/stats.md)."""

    store: str | None = Field(
        None, description="a `type: store` backend's name; default: the first one")
    dimensions: tuple[str, ...] = Field(("version", "platform.os", "deployment_type"),
                                        description="dotted paths the report breaks down by")
    public: Switch = Field(False, description="serve k-anonymous counts at /public/stats")
    public_dimensions: tuple[str, ...] | None = Field(
        None, description="the dimensions /public/stats shows; default: `dimensions`")
    k: int = Field(10, ge=2, description="fewest installations a public bucket may show")
    cache: Duration = Field(300.0, ge=0, description="how long /public/stats is reused")
    churn_after: Duration = Field(30 * 86400.0, ge=86400,
                                  description="silence after which an installation is churned")
    event: str | None = Field(
        None, description="count only rows of this event name; default: every row")

    @field_validator("dimensions", "public_dimensions")
    @classmethod
    def _dotted_paths(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for path in v or ():
            if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", path):
                raise ValueError(f"{path[:64]!r}: a dimension is a dotted path of letters, "
                                 "digits, _ and -, e.g. platform.os")
        return v


class BatchConfig(Strict):
    """How a delivery worker groups events: up to ``max_events``, waiting at most ``max_wait``."""

    max_events: int = Field(100, gt=0, description="events per batch at most")
    max_wait: Duration = Field(1.0, description="how long a batch waits to fill")


class RetryConfig(Strict):
    """Exponential backoff with full jitter from ``initial`` to ``max``; then the DLQ."""

    initial: Duration = Field(1.0, gt=0, description="the first wait")
    max: Duration = Field(600.0, gt=0, description="the longest wait between two tries")
    give_up_after: Duration = Field(72 * 3600.0, gt=0,
                                    description="then the batch goes to the dead-letter queue")


FILTER_COMMON = {"type", "when"}
BACKEND_COMMON = {"type", "enabled", "when", "filters", "batch", "retry", "concurrency"}


@dataclass(frozen=True)
class FilterSpec:
    """A validated filter entry: its class, its options, and an optional ``when:``."""

    type: str
    cls: builtins.type[Any]
    options: BaseModel | None
    when: Condition | None
    key: str  # the key path in the file, e.g. "pipeline[2]"

    def build(self) -> Any:
        """A fresh filter instance (filters may hold state, e.g. dedupe windows)."""
        return self.cls(self.options) if self.options is not None else self.cls()


@dataclass(frozen=True)
class BackendSpec:
    """A validated backend entry: shared delivery settings plus the backend's own options."""

    name: str
    type: str
    cls: builtins.type[Any]
    options: BaseModel | None
    enabled: bool = True
    when: Condition | None = None
    filters: tuple[FilterSpec, ...] = ()
    batch: BatchConfig = field(default_factory=BatchConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    concurrency: int = 1
    profiles: Profiles = EMPTY  # the config's source profiles, for backends that use them

    def build(self) -> Any:
        backend = (self.cls(self.name, self.options) if self.options is not None
                   else self.cls(self.name))
        backend.use_profiles(self.profiles)
        return backend


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    file: str
    server: ServerConfig
    spool: SpoolConfig
    pipeline: tuple[FilterSpec, ...]
    backends: Mapping[str, BackendSpec]
    raw: Mapping[str, Any]  # the interpolated YAML, for `check --show` (masked there)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    profiles: Profiles = EMPTY  # sources.profiles and sources.include, compiled (router/sources)

    @property
    def enabled_backends(self) -> dict[str, BackendSpec]:
        return {n: b for n, b in self.backends.items() if b.enabled}


SECTIONS: dict[str, type[Strict]] = {"server": ServerConfig, "spool": SpoolConfig,
                                       "sources": SourcesConfig, "admin": AdminConfig,
                                       "stats": StatsConfig, "limits": LimitsConfig}
TOP_LEVEL = {*SECTIONS, "pipeline", "backends", "tests"}  # tests: router/configtest


class BackendCommon(Strict):
    type: str = Field(description="a backend type below, or `module:Class`")
    enabled: Switch = Field(True, description="false (or \"\"): configured but not run")
    when: Condition | None = Field(None, description="send only the events that match")
    batch: BatchConfig = Field(BatchConfig(), description="how events are grouped")
    retry: RetryConfig = Field(RetryConfig(), description="how failures are retried")
    concurrency: int = Field(1, gt=0, le=64, description="batches in flight at once: "
                             "one limit over all workers' spool files (per worker with "
                             "--delivery inline)")
