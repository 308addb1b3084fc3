"""PostHog capture v1's wire fields and the v0 event properties they stand for: one table, read
one way by ingest (v1 → properties) and the other way by the PostHog backend (properties → v1).
"""

from __future__ import annotations

V1_TOP_LEVEL: tuple[tuple[str, str], ...] = (
    # (v1 field beside `properties`, the property v0 and PostHog's own pipeline keep it in)
    ("session_id", "$session_id"),
    ("window_id", "$window_id"),
)
V1_OPTIONS: tuple[tuple[str, str, type], ...] = (
    # (v1 field inside `options`, the property, its type in v1)
    ("cookieless_mode", "$cookieless_mode", bool),
    ("disable_skew_correction", "$ignore_sent_at", bool),
    ("product_tour_id", "$product_tour_id", str),
    ("process_person_profile", "$process_person_profile", bool),
)
