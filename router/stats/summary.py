"""``beacon-router stats``: the dashboard's numbers as plain-text tables for a terminal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..config import Config
from .report import Range
from .service import Stats, store_backend, utc_today

TOP = 15  # values shown per dimension; the rest are summed into one line

_TOTALS = (
    ("active_1d", "active today"),
    ("active_7d", "active, 7 days"),
    ("active_30d", "active, 30 days"),
    ("installations", "installations in range"),
    ("new", "new in range"),
    ("churned", "churned in range"),
)


async def summary(config: Config, days: int) -> str:
    """The last ``days`` days (today included) of the config's store, as text."""
    found = await summary_report(config, days)
    if found is None:
        return "no backend of type store: nothing to count\n"
    return render(*found)


async def summary_report(config: Config, days: int) -> tuple[dict[str, Any], str] | None:
    """The report of the last ``days`` days and the store's name; None without a store."""
    stats = Stats.from_config(config)
    if stats is None:
        return None
    try:
        today = utc_today()
        span = Range.parse(
            (today - timedelta(days=days - 1)).isoformat(), today.isoformat(), "day", today
        )
        report = await stats.report(span)
    finally:
        await stats.aclose()
    spec = store_backend(config)
    return report, spec.name if spec else "?"


def render(report: dict[str, Any], store: str) -> str:
    """The report's totals and breakdowns as aligned tables."""
    totals = report["totals"]
    lines = [f"Installed base {report['from']} to {report['to']} (UTC), store {store!r}", ""]
    width = max(len(label) for _, label in _TOTALS)
    for key, label in _TOTALS:
        note = f"  (known until {report['churn_known_until']})" if key == "churned" else ""
        lines.append(f"  {label:<{width}}  {totals[key]:>9,}{note}")
    everyone = totals["installations"] or 1
    for name, buckets in report["breakdowns"].items():
        rows = [(str(b["value"]), b["installations"]) for b in buckets[:TOP]]
        rest = buckets[TOP:]
        if rest:
            rows.append((f"… {len(rest)} more", sum(b["installations"] for b in rest)))
        col = max([len(name), *(len(v) for v, _ in rows)])
        lines += ["", f"  {name:<{col}}  {'installations':>13}  {'share':>6}"]
        lines += [f"  {v:<{col}}  {n:>13,}  {n / everyone:>6.1%}" for v, n in rows]
        if not rows:
            lines.append("  (no installations in range)")
    return "\n".join(lines) + "\n"
