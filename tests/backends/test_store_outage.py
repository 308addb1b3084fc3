"""A PostgreSQL outage as the router sees it: the store backend's connections are cut while
events keep arriving; when the database is back every acked event is stored exactly once."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest
from support import TcpProxy

from router.config.loader import loads
from router.web.app import ROUTER, create_app

pytestmark = pytest.mark.postgres


async def count_rows(dsn: str, schema: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return tuple(await conn.fetchrow(  # type: ignore[return-value]
            f'SELECT count(*), count(DISTINCT uuid) FROM "{schema}".beacons'))
    except asyncpg.UndefinedTableError:
        return (0, 0)
    finally:
        await conn.close()


async def test_postgres_outage_recovers_without_loss_or_duplicates(
        postgres_dsn, postgres_schema, aiohttp_client, tmp_path):
    url = urlsplit(postgres_dsn)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    via_proxy = postgres_dsn.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}")
    config = loads(f"""
spool: {{path: "{tmp_path}/spool.db"}}
backends:
  db:
    type: store
    url: "{via_proxy}"
    schema: {postgres_schema}
    timeout: 2s
    batch: {{max_events: 20, max_wait: 20ms}}
    retry: {{initial: 50ms, max: 300ms}}
""")
    client = await aiohttp_client(create_app(config))
    for i in range(30):
        assert (await client.post("/beacon", json={"n": i})).status == 202
    for _ in range(200):
        if (await count_rows(postgres_dsn, postgres_schema))[0] == 30:
            break
        await asyncio.sleep(0.05)
    assert await count_rows(postgres_dsn, postgres_schema) == (30, 30)

    await proxy.cut()  # the database is gone: connections reset, new ones refused
    for i in range(30, 90):
        assert (await client.post("/beacon", json={"n": i})).status == 202
    worker = client.app[ROUTER].delivery.workers["db"]
    for _ in range(200):
        if worker.health.consecutive_failures >= 2:
            break
        await asyncio.sleep(0.05)
    assert worker.health.consecutive_failures >= 2, "the outage should be noticed"

    await proxy.start()  # back
    for _ in range(400):
        if (await count_rows(postgres_dsn, postgres_schema))[0] >= 90:
            break
        await asyncio.sleep(0.05)
    assert await count_rows(postgres_dsn, postgres_schema) == (90, 90)
    await proxy.cut()
