"""k-anonymous buckets for public statistics: no published number counts fewer than k.

A bucket smaller than ``k`` is merged into ``"other"``. If ``"other"`` itself would then hold
fewer than ``k`` — and so could be worked out as the total minus the buckets shown — the
smallest shown buckets join it until it holds ``k`` or more. If even everything together is
fewer than ``k``, nothing is shown.
"""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"


def k_anonymous(buckets: Iterable[tuple[str, int]], k: int) -> list[tuple[str, int]]:
    """``(value, count)`` buckets, largest first, each ≥ k, the small ones merged into "other"."""
    ordered = sorted(((v, n) for v, n in buckets if n > 0), key=lambda b: (-b[1], b[0]))
    shown = [(v, n) for v, n in ordered if n >= k and v != OTHER]
    rest = sum(n for _, n in ordered) - sum(n for _, n in shown)
    while 0 < rest < k and shown:
        rest += shown.pop()[1]
    if rest >= k:
        return [*shown, (OTHER, rest)]
    return shown  # rest is 0 here, or below k with nothing left to merge: suppressed


def at_least(count: int, k: int) -> int | None:
    """A single published count: itself when ≥ k, else None (shown as "fewer than k")."""
    return count if count >= k else None
