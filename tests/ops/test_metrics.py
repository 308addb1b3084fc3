"""/metrics after real traffic: every metric the issue lists, with the values the traffic makes."""

from __future__ import annotations

import re

from opsupport import file_events, metric, scrape
from prometheus_client.parser import text_string_to_metric_families
from support import until

BEACON = {"installation_id": "inst-1", "version": "1.0.0"}


def config(receiver_url: str) -> str:
    return f"""
    spool: {{path: ./data/spool.db}}
    pipeline:
      - {{type: opt_out, flag: telemetry}}
    backends:
      archive:
        type: file
        path: ./data/archive.jsonl
        batch: {{max_events: 500, max_wait: 50ms}}
      hook:
        type: webhook
        url: "{receiver_url}"
        batch: {{max_events: 500, max_wait: 50ms}}
        retry: {{initial: 10ms, max: 20ms}}
    """


async def test_metrics_count_what_real_traffic_did(router_client, receiver, tmp_path):
    receiver.status = 400  # the webhook refuses for good: its events go to the DLQ
    client = await router_client(config(receiver.url))
    resp = await client.post(
        "/beacon",
        json=[BEACON, {**BEACON, "installation_id": "inst-2"}, {**BEACON, "telemetry": False}],
    )
    assert resp.status == 202
    assert (
        await client.post(
            "/beacon", data=b"{not json", headers={"Content-Type": "application/json"}
        )
    ).status == 400
    await until(lambda: len(file_events(tmp_path / "data" / "archive.jsonl")) == 2)
    text = ""

    async def dead_lettered() -> bool:
        nonlocal text
        text = await scrape(client)
        return metric(text, "beacon_router_dead_letter_events", backend="hook") == 2

    for _ in range(500):
        if await dead_lettered():
            break
    assert metric(text, "beacon_router_events_received_total", source="beacon") == 3
    assert metric(text, "beacon_router_events_accepted_total", source="beacon") == 2
    assert (
        metric(text, "beacon_router_requests_rejected_total", source="beacon", reason="bad_request")
        == 1
    )
    assert (
        metric(text, "beacon_router_events_dropped_total", stage="pipeline", filter="opt_out") == 1
    )
    assert metric(text, "beacon_router_events_delivered_total", backend="archive") == 2
    assert metric(text, "beacon_router_events_dead_lettered_total", backend="hook") == 2
    assert metric(text, "beacon_router_delivery_failures_total", backend="hook", kind="dead") == 1
    assert metric(text, "beacon_router_batch_size_events_sum", backend="archive") == 2
    assert metric(text, "beacon_router_send_duration_seconds_count", backend="archive") >= 1
    assert metric(text, "beacon_router_request_duration_seconds_count", route="/beacon") == 2
    assert metric(text, "beacon_router_spool_depth_events", backend="archive") == 0
    assert metric(text, "beacon_router_spool_oldest_event_age_seconds", backend="archive") == 0
    assert metric(text, "beacon_router_config_last_reload_successful") == 1
    assert metric(text, "beacon_router_config_last_reload_success_timestamp_seconds") > 0
    assert metric(text, "beacon_router_config_reloads_total", result="failure") == 0
    assert metric(text, "beacon_router_build_info") == 1


async def test_a_stuck_backend_shows_queue_depth_oldest_age_and_retries(
    router_client, receiver, tmp_path
):
    receiver.status = 503  # transient: retried, never acked while it lasts
    client = await router_client(config(receiver.url))
    assert (await client.post("/beacon", json=BEACON)).status == 202
    await until(lambda: receiver.attempts >= 2)
    text = await scrape(client)
    assert metric(text, "beacon_router_spool_depth_events", backend="hook") == 1
    assert metric(text, "beacon_router_spool_oldest_event_age_seconds", backend="hook") > 0
    assert metric(text, "beacon_router_events_retried_total", backend="hook") >= 1
    assert metric(text, "beacon_router_delivery_failures_total", backend="hook", kind="retry") >= 1
    assert metric(text, "beacon_router_backend_healthy", backend="archive") == 1


async def test_rate_limited_and_unauthorized_requests_are_counted_by_reason(router_client):
    client = await router_client("""
    spool: {path: ./data/spool.db}
    sources: {beacon: {tokens: [s3cret-token]}}
    limits: {per_ip: {rate: 1, per: 1h, burst: 1}}
    """)
    assert (await client.post("/beacon", json=BEACON)).status == 401
    assert (await client.post("/beacon", json=BEACON)).status == 429
    text = await scrape(client)
    assert (
        metric(
            text, "beacon_router_requests_rejected_total", source="beacon", reason="unauthorized"
        )
        == 1
    )
    assert (
        metric(
            text, "beacon_router_requests_rejected_total", source="beacon", reason="rate_limited"
        )
        == 1
    )


# A unit, or for 0/1 gauges the state they report (as Prometheus's own `up`).
_UNITS = ("_total", "_seconds", "_bytes", "_events", "_info", "_successful", "_healthy")


async def test_every_metric_name_follows_prometheus_conventions(router_client):
    client = await router_client("spool: {path: ./data/spool.db}")
    families = list(text_string_to_metric_families(await scrape(client)))
    ours = [f for f in families if f.name.startswith("beacon_router_")]
    assert len(ours) >= 20
    for family in ours:
        assert re.fullmatch(r"beacon_router_[a-z][a-z0-9_]*", family.name)
        exposed = family.name + ("_total" if family.type == "counter" else "")
        assert exposed.endswith(_UNITS), exposed
        assert family.documentation, family.name
