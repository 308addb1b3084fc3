"""The suite's results against the issue's targets, as JSON and as a markdown table."""

from __future__ import annotations

from typing import Any

KIB = 1024


def dig(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]...``, or None as soon as a key is missing."""
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def target(name: str, goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {
        "target": name,
        "goal": goal,
        "measured": measured,
        "result": "n/a" if met is None else "MET" if met else "NOT MET",
    }


def build(results: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Every target of the issue, evaluated on ratios measured in the same run."""
    r, base, peer = results.get("router", {}), results.get("baseline", {}), results.get("peer", {})
    drain, workers = results.get("drain", {}), results.get("workers", {})
    router_rps = dig(r, "single", "rps", "median")
    targets = []

    # The pairs' median where the run has them (bench/suite.py, Suite.paired): the two
    # scenarios' medians come from runs minutes apart on a host whose speed drifts.
    separate = ratio(router_rps, dig(base, "single", "rps", "median"))
    single = dig(r, "single_paired", "ratio", "median") or separate
    p99 = dig(r, "single", "p99_ms", "median")
    targets.append(
        target(
            "single-beacon ingest, durable spool",
            "≥ 0.50 x bare aiohttp req/s, p99 ≤ 25 ms",
            f"{single} x (paired runs; {separate} x from the scenarios' medians), "
            f"p99 {p99} ms",
            None if single is None else single >= 0.5 and p99 <= 25,
        )
    )

    batch = dig(r, "batch", "events_per_s", "median")
    batch_paired = dig(r, "batch_paired", "ratio", "median")
    targets.append(
        target(
            "batched ingest",
            "≥ 50,000 events/s, one process",
            f"{_n(batch)} events/s"
            + (f" ({batch_paired} x the bare server's, paired runs)" if batch_paired else ""),
            None if batch is None else batch >= 50_000,
        )
    )

    fast = ratio(dig(r, "posthog", "fast", "rps", "median"), dig(peer, "fast", "rps", "median"))
    targets.append(
        target(
            "vs nginx+Lua, fast upstream",
            "≥ 1.0 x its req/s",
            f"{fast} x",
            None if fast is None else fast >= 1.0,
        )
    )
    slow = ratio(
        dig(r, "posthog", "slow_upstream", "rps", "median"),
        dig(peer, "slow_upstream", "rps", "median"),
    )
    targets.append(
        target(
            "vs nginx+Lua, upstream +50 ms",
            "≥ 5 x its req/s",
            f"{slow} x",
            None if slow is None else slow >= 5,
        )
    )
    lost, peer_lost = dig(r, "posthog", "outage", "lost"), dig(peer, "outage", "lost_pct")
    targets.append(
        target(
            f"{_n(dig(meta, 'settings', 'outage_seconds') / 3)} s upstream outage in a "
            f"{_n(dig(meta, 'settings', 'outage_seconds'))} s run",
            "0 acknowledged events lost",
            f"router lost {lost} of {dig(r, 'posthog', 'outage', 'acknowledged')}; "
            f"peer lost {peer_lost} %",
            None if lost is None else lost == 0,
        )
    )

    drain_rate = dig(drain, "drain", "events_per_s")
    targets.append(
        target(
            "delivery keeps up",
            "drain events/s ≥ single-beacon ingest req/s",
            f"{_n(drain_rate)} vs {_n(router_rps)} ({ratio(drain_rate, router_rps)} x)",
            None if drain_rate is None or router_rps is None else drain_rate >= router_rps,
        )
    )
    per_request = [
        p["events_per_request"]
        for p in (dig(drain, "drain", "upstream") or {}).values()
        if p.get("events_per_request")
    ]
    targets.append(
        target(
            "batching with a backlog",
            "≥ 100 events per upstream request",
            f"min {min(per_request)} ({', '.join(str(x) for x in per_request)})"
            if per_request
            else "None",
            min(per_request) >= 100 if per_request else None,
        )
    )

    # The tree's memory is its PSS: the RSS sum counts the pages serve's forked processes share
    # once per process (bench/procs.py). Both are shown; results from before PSS was sampled
    # are judged on the RSS sum.
    def peak(field: str) -> float | None:
        values = [dig(drain, part, field) for part in ("down", "drain")]
        return max((x for x in values if x is not None), default=None)

    rss, pss = peak("peak_rss_mb"), peak("peak_pss_mb")
    judged = pss if pss is not None else rss
    queued = dig(drain, "events_queued")
    targets.append(
        target(
            f"memory with {_n(queued)} events queued",
            "≤ 150 MB (the process tree's PSS)",
            f"peak PSS {pss} MB (RSS summed over the processes {rss} MB)",
            judged <= 150 if judged is not None else None,
        )
    )
    per_event = dig(drain, "spool_bytes_per_event")
    targets.append(
        target(
            "spool size",
            "≤ 1.5 KB per queued ~400-byte beacon",
            f"{per_event} bytes/event",
            None if per_event is None else per_event <= 1.5 * KIB,
        )
    )
    first, last = (
        dig(drain, "down", "ingest_first_third_per_s"),
        dig(drain, "down", "ingest_last_third_per_s"),
    )
    rss_first, rss_last = dig(drain, "down", "rss_first_mb"), dig(drain, "down", "rss_last_mb")
    flat = (
        None
        if first is None or rss_first is None
        else last >= 0.8 * first and rss_last - rss_first <= 20
    )
    targets.append(
        target(
            "backends down for the whole run",
            "ingest and RSS flat (last third ≥ 0.8 x first; RSS +≤ 20 MB)",
            f"{_n(first)} → {_n(last)} events/s; RSS {rss_first} → {rss_last} MB",
            flat,
        )
    )

    if "skipped" in workers:
        targets.append(target("--workers 2", "≥ 1.6 x one worker", workers["skipped"], None))
    else:
        two = ratio(dig(workers, "2", "rps", "median"), dig(workers, "1", "rps", "median"))
        targets.append(
            target(
                "--workers 2", "≥ 1.6 x one worker", f"{two} x", None if two is None else two >= 1.6
            )
        )
    return {"meta": meta, "targets": targets, "results": results}


def _n(x: float | None) -> str:
    return "None" if x is None else f"{x:,.0f}"


def _range(stat: dict[str, float] | None, digits: int = 0) -> str:
    if not stat:
        return "—"
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}-{fmt.format(stat['max'])})"


def markdown(summary: dict[str, Any]) -> str:
    """The tables bench/README.md quotes."""
    meta, results = summary["meta"], summary["results"]
    s = meta["settings"]
    lines = [
        f"Run {meta['started']}: {meta['cpus']} CPUs, load average {meta['loadavg_start']} "
        f"at the start, {meta.get('loadavg_end')} at the end; {s['runs']} runs x "
        f"{s['seconds']} s, {s['connections']} connections (batches: "
        f"{s['batch_connections']}); wall time {meta.get('wall_s')} s.",
        "",
        "| target | goal | measured | result |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['goal']} | {t['measured']} | **{t['result']}** |"
        for t in summary["targets"]
    ]
    base_single = dig(results, "baseline", "single", "rps", "median")
    base_batch = dig(results, "baseline", "batch", "events_per_s", "median")
    rows = [
        ("nginx `return 204` (ceiling)", dig(results, "ceiling"), base_single, "rps"),
        ("bare aiohttp + orjson, single", dig(results, "baseline", "single"), base_single, "rps"),
        (
            "bare aiohttp + orjson, batch of 100",
            dig(results, "baseline", "batch"),
            base_batch,
            "events_per_s",
        ),
        ("router, single (scenario 1)", dig(results, "router", "single"), base_single, "rps"),
        (
            "router, batch of 100 (scenario 2)",
            dig(results, "router", "batch"),
            base_batch,
            "events_per_s",
        ),
        (
            "router (store + posthog), fast upstream",
            dig(results, "router", "posthog", "fast"),
            base_single,
            "rps",
        ),
        (
            "router (store + posthog), upstream +50 ms",
            dig(results, "router", "posthog", "slow_upstream"),
            base_single,
            "rps",
        ),
        ("nginx+Lua peer, fast upstream", dig(results, "peer", "fast"), base_single, "rps"),
        (
            "nginx+Lua peer, upstream +50 ms",
            dig(results, "peer", "slow_upstream"),
            base_single,
            "rps",
        ),
        (
            "router, no pipeline (webhook only)",
            dig(results, "pipeline", "none"),
            base_single,
            "rps",
        ),
        (
            "router, privacy pipeline (webhook only)",
            dig(results, "pipeline", "privacy"),
            base_single,
            "rps",
        ),
        ("router --workers 1", dig(results, "workers", "1"), base_single, "rps"),
        ("router --workers 2", dig(results, "workers", "2"), base_single, "rps"),
    ]
    lines += [
        "",
        "| server / scenario | req/s median (min-max) | events/s | p50 ms | p99 ms "
        "| x baseline | server CPU us/event | peak RSS MB (sum) | peak PSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, res, base, key in rows:
        if not res or "rps" not in res:
            continue
        lines.append(
            f"| {label} | {_range(res['rps'])} | {_n(res['events_per_s']['median'])} | "
            f"{res['p50_ms']['median']} | {res['p99_ms']['median']} | "
            f"{ratio(res[key]['median'], base)} | "
            f"{dig(res, 'cpu_us_per_event', 'median')} | {res['peak_rss_mb']} | "
            f"{res.get('peak_pss_mb')} |"
        )
    outage = [
        ("router (store + posthog)", dig(results, "router", "posthog", "outage")),
        ("peer", dig(results, "peer", "outage")),
    ]
    if any(o for _, o in outage):
        lines += [
            "",
            "| outage run | acknowledged | received upstream | lost | lost % |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {who} | {o['acknowledged']:,} | {o['received']:,} | {o['lost']:,} | "
            f"{o['lost_pct']} |"
            for who, o in outage
            if o
        ]
    drain = dig(results, "drain", "drain")
    if drain:
        lines += [
            "",
            f"Drain of {drain['events']:,} queued events: "
            f"{drain['seconds']} s, {_n(drain['events_per_s'])} events/s (slowest "
            f"backend); peak PSS {drain.get('peak_pss_mb')} MB (RSS summed "
            f"{drain['peak_rss_mb']} MB); server CPU "
            f"{drain.get('cpu_us_per_event')} us per event (all backends).",
            "",
            "| backend | seconds | events/s |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {b['seconds']} | {_n(b['events_per_s'])} |"
            for name, b in drain["backends"].items()
        ]
        lines += ["", "| upstream path | requests | events | events/request |", "|---|---|---|---|"]
        lines += [
            f"| `{path}` | {u['requests']:,} | {u['events']:,} | {u['events_per_request']} |"
            for path, u in drain["upstream"].items()
        ]
    per_filter = dig(results, "pipeline", "per_filter")
    if per_filter:
        lines += ["", "| filter (in process) | µs per event |", "|---|---|"]
        lines += [f"| {name} | {us} |" for name, us in per_filter["filters"].items()]
    return "\n".join(lines) + "\n"
