"""The router's configuration: its shape (:mod:`.schema`), secret masking (:mod:`.masking`) and
reading a file (:mod:`.loader`, which imports the filter and backend registries and so is not
re-exported here: the filters and backends themselves import the schema)."""

from .masking import SECRET_KEYS, masked
from .schema import (
    AdminConfig,
    BackendSpec,
    BatchConfig,
    BeaconSourceConfig,
    Config,
    Duration,
    FilterSpec,
    LimitsConfig,
    PostHogSourceConfig,
    RateLimitConfig,
    RetryConfig,
    ServerConfig,
    Size,
    SourcesConfig,
    SpoolConfig,
    StatsConfig,
    Strict,
    Switch,
    split_listen,
)

__all__ = ["SECRET_KEYS", "AdminConfig", "BackendSpec", "BatchConfig", "BeaconSourceConfig",
           "Config", "Duration", "FilterSpec", "LimitsConfig", "PostHogSourceConfig",
           "RateLimitConfig", "RetryConfig", "ServerConfig", "Size", "SourcesConfig",
           "SpoolConfig", "StatsConfig", "Strict", "Switch", "masked", "split_listen"]
