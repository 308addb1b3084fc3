"""geoip and user_agent in a real router: PostHog gets the country and `$geoip_disable`, and the
client's address and User-Agent are in no file under the data directory and not in the log."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import aiohttp
from fake_posthog import API_KEY, FakePostHog
from support import RouterProcess, free_port

CLIENT_IP = "193.99.144.80"  # a real German address (heise.de), as a trusted proxy forwards it
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 "
              "BeaconClient/7.7.7-uniquemarker")


async def until(predicate, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_a_real_router_enriches_without_keeping_the_address_anywhere(tmp_path, serve):
    fake = FakePostHog()
    fake.url = await serve(fake)
    (tmp_path / "router.yaml").write_text(textwrap.dedent(f"""
        spool: {{path: ./data/spool.db}}
        limits: {{trusted_proxies: [127.0.0.0/8]}}
        pipeline:
          - {{type: geoip}}
          - {{type: user_agent}}
        backends:
          posthog:
            type: posthog
            host: "{fake.url}"
            api_key: {API_KEY}
            distinct_id: installation_id
            batch: {{max_wait: 20ms}}
          archive: {{type: store, url: "sqlite:///data/beacons.db", batch: {{max_wait: 20ms}}}}
          lines: {{type: file, path: ./data/events.jsonl, batch: {{max_wait: 20ms}}}}
        """))
    router = RouterProcess(str(tmp_path / "router.yaml"), free_port(), str(tmp_path),
                           args=("--log-format", "json", "--log-level", "debug"))
    router.start()
    try:
        await router.wait_ready()
        headers = {"X-Forwarded-For": CLIENT_IP, "User-Agent": USER_AGENT}
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                body = {"installation_id": f"inst-{i}", "version": "2.0.0"}
                async with http.post(f"{router.url}/beacon", json=body, headers=headers) as resp:
                    assert resp.status == 202
            # A malformed request too: its error path must not log the address either.
            async with http.post(f"{router.url}/beacon", data=b"{", headers={
                    **headers, "Content-Type": "application/json"}) as resp:
                assert resp.status == 400
        await until(lambda: len(fake.accepted) == 5
                    and (tmp_path / "data" / "events.jsonl").exists()
                    and (tmp_path / "data" / "events.jsonl").read_text().count("\n") == 5)
        assert router.terminate() == 0
    finally:
        router.stop()

    for sent in fake.accepted.values():
        properties = sent["properties"]
        assert properties["$geoip_disable"] is True
        assert properties["$geoip_country_code"] == "DE"
        assert properties["geo"] == {"country": "DE"}
        assert properties["client"] == {"browser": "Firefox", "os": "Linux", "device": "Other"}
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"spool.db", "beacons.db", "events.jsonl"}
    for path in [*files, Path(router.log)]:
        raw = path.read_bytes()
        assert CLIENT_IP.encode() not in raw, path
        assert b"uniquemarker" not in raw, path  # the User-Agent is not kept either
    assert b"DE" in (tmp_path / "data" / "events.jsonl").read_bytes()
