"""Upkeep of the shared Redis stream: the commands behind what each router does in the background.

* ``refresh``: reset the idle time of entries this process holds, so no other instance takes
  them over while their send (or its retries) is under way;
* ``hand_over``: on a clean stop, make what this process holds claimable by the others at once;
* ``trim``: drop the entries below the oldest one some consumer group has not acked;
* ``sweep``: forget consumers (``host:pid`` names of old processes) that hold nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

_CHUNK = 1000  # ids per XCLAIM
GONE_AFTER_MS = 3600 * 1000  # a consumer idle this long that holds nothing has gone for good


async def refresh(
    client: Redis, stream: str, group: str, consumer: str, held: Collection[str]
) -> None:
    """XCLAIM ``held`` to ourselves again: idle time 0, delivery count unchanged (JUSTID)."""
    ids: list[Any] = list(held)  # redis-py's hint wants list[EncodableT]
    for i in range(0, len(ids), _CHUNK):
        await client.xclaim(
            stream, group, consumer, min_idle_time=0, message_ids=ids[i : i + _CHUNK], justid=True
        )


async def hand_over(
    client: Redis, stream: str, group: str, consumer: str, held: Collection[str], claim_idle: float
) -> int:
    """Mark ``held`` idle for longer than ``claim_idle``, so the next XAUTOCLAIM of any instance
    takes it, and take back the delivery this hand-over will add: a clean stop is not a
    failure that should push an entry towards ``max_deliveries``. Returns how many."""
    if not held:
        return 0
    ids = sorted(held, key=id_key)
    pending: Any = await client.xpending_range(
        stream, group, min=ids[0], max=ids[-1], count=len(ids) + 100, consumername=consumer
    )
    by_count: dict[int, list[Any]] = {}
    for p in pending:
        by_count.setdefault(int(p["times_delivered"]), []).append(p["message_id"])
    for count, message_ids in by_count.items():
        await client.xclaim(
            stream,
            group,
            consumer,
            min_idle_time=0,
            message_ids=message_ids,
            idle=int(claim_idle * 1000) + 1,
            justid=True,
            retrycount=max(0, count - 1),
        )
    return len(pending)


async def measure(client: Redis, stream: str) -> tuple[int, int]:
    """(entries, bytes) of the stream; bytes is MEMORY USAGE's sampled estimate."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.xlen(stream)
        pipe.memory_usage(stream)
        length, used = await pipe.execute()
    return int(length), int(used or 0)


async def trim(client: Redis, stream: str) -> None:
    """XTRIM MINID the oldest entry some group has not acked; every older one is done."""
    # Last-delivered ids first, pending lists after: an entry delivered in between is newer
    # than the last-delivered id read, so it stays above the floor either way.
    found = await groups(client, stream)
    if not found:
        return  # no group: nothing says which entries are done
    async with client.pipeline(transaction=False) as pipe:
        for g in found:
            pipe.xpending(stream, g["name"])
        summaries = await pipe.execute()
    floors = []
    for g, summary in zip(found, summaries, strict=True):
        floor = next_id(g["last-delivered-id"].decode())  # every id up to it was delivered
        if summary["pending"]:
            floor = min(floor, summary["min"].decode(), key=id_key)
        floors.append(floor)
    await client.xtrim(stream, minid=min(floors, key=id_key), approximate=False)


async def sweep(client: Redis, stream: str, group: str, keep: str) -> None:
    """Delete consumers idle for an hour that hold nothing (deleting one that holds entries
    would drop them from the pending list, so those are never touched)."""
    for c in await client.xinfo_consumers(stream, group):
        if c["pending"] == 0 and c["idle"] > GONE_AFTER_MS and c["name"].decode() != keep:
            await client.xgroup_delconsumer(stream, group, c["name"])


async def groups(client: Redis, stream: str) -> list[dict[str, Any]]:
    """XINFO GROUPS; no groups when the stream does not exist (yet)."""
    try:
        return list(await client.xinfo_groups(stream))
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise


def id_key(stream_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence) pairs, not as strings."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def next_id(stream_id: str) -> str:
    ms, seq = id_key(stream_id)
    return f"{ms}-{seq + 1}"
