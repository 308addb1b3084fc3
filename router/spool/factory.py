"""The spool a config asks for, and the state router instances share on it.

The Redis modules need the optional ``redis`` extra: they are imported only when a config asks
for a Redis spool (``router.extras`` refuses such a config at load when the extra is missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import SpoolConfig
from .base import Spool
from .sqlite import SqliteSpool

if TYPE_CHECKING:
    from .redis_shared import RedisShared


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
    return SqliteSpool(config.path, max_size=config.max_size, when_full=config.when_full,
                       reserve=config.reserve)


def create_shared(config: SpoolConfig) -> RedisShared | None:
    """What router instances share (dedupe, rate limits): only on a Redis spool."""
    if config.type != "redis":
        return None
    from .redis import RedisShared  # the optional redis extra (checked at config load)

    return RedisShared.for_spool(config)
