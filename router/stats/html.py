"""The public statistics page: plain server-rendered HTML, no script, every value escaped."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:46rem;padding:0 1rem;
color:#1f2933}
h1{font-size:1.4rem;margin-bottom:.2rem}.muted{color:#61707e}
.cards{display:flex;gap:1rem;margin:1.2rem 0}.card{flex:1;border:1px solid #d9e0e6;
border-radius:8px;padding:.8rem 1rem}.card b{display:block;font-size:1.6rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1.4rem}
td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e4e9ee}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
"""


def public_page(body: dict[str, Any]) -> str:
    """The HTML for a public report as :meth:`router.stats.service.Stats.public` builds it."""
    k = int(body["k"])
    cards = "".join(
        f'<div class="card"><span class="muted">active, last {label}</span>'
        f"<b>{_count(body['active'][key], k)}</b></div>"
        for key, label in (("1d", "day"), ("7d", "7 days"), ("30d", "30 days"))
    )
    tables = []
    for name, buckets in body["breakdowns"].items():
        rows = "".join(
            f'<tr><td>{escape(str(b["value"]))}</td><td class="n">{b["installations"]:,}</td></tr>'
            for b in buckets
        )
        rows = rows or f'<tr><td colspan="2" class="muted">fewer than {k} installations</td></tr>'
        tables.append(
            f"<h2>{escape(name)}</h2><table><thead><tr><th>value</th>"
            f'<th class="n">installations</th></tr></thead><tbody>{rows}</tbody></table>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Installed base</title><style>{_STYLE}</style></head><body>"
        "<h1>Installed base</h1>"
        f'<p class="muted">{escape(body["from"])} to {escape(body["to"])} (UTC). Installations are '
        f"counted by an anonymous id, each under the last value it reported. Groups of fewer "
        f'than {k} are merged into "other" or not shown.</p>'
        f'<div class="cards">{cards}</div>{"".join(tables)}'
        f'<p class="muted">Generated {escape(body["generated_at"])}. '
        'Also as <a href="?format=json">JSON</a>.</p></body></html>'
    )


def _count(value: int | None, k: int) -> str:
    return f"{value:,}" if value is not None else f'<span title="fewer than {k}">&lt; {k}</span>'
