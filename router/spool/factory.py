"""The spool a config asks for."""

from __future__ import annotations

from ..config import SpoolConfig
from .base import Spool
from .sqlite import SqliteSpool


def create_spool(config: SpoolConfig) -> Spool:
    """The spool the config asks for (SQLite file by default, Redis stream to scale out)."""
    if config.type == "redis":
        assert config.url is not None  # SpoolConfig requires it for type: redis
        from .redis import RedisSpool  # the optional redis extra (checked at config load)

        return RedisSpool(
            config.url,
            stream=config.stream,
            key_prefix=config.key_prefix,
            consumer=config.consumer,
            claim_idle=config.claim_idle,
            max_deliveries=config.max_deliveries,
            max_events=config.max_events,
            max_size=config.max_size,
        )
    return SqliteSpool(config.path, max_size=config.max_size, when_full=config.when_full)
