"""k-anonymous buckets: no published number, nor one derived from them, counts fewer than k."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.stats.kanon import OTHER, at_least, k_anonymous


def test_small_buckets_merge_into_other():
    buckets = [("2.0", 40), ("1.9", 12), ("1.8", 4), ("1.7", 3), ("0.1", 3)]
    assert k_anonymous(buckets, 10) == [("2.0", 40), ("1.9", 12), (OTHER, 10)]


def test_other_below_k_takes_the_smallest_shown_bucket_so_it_cannot_be_derived():
    # "other" = 3 would follow from the total minus the buckets shown.
    assert k_anonymous([("a", 50), ("b", 11), ("c", 3)], 10) == [("a", 50), (OTHER, 14)]


def test_everything_is_suppressed_when_even_the_total_is_below_k():
    assert k_anonymous([("a", 4), ("b", 3)], 10) == []


def test_a_real_value_named_other_is_merged_not_shown_twice():
    assert k_anonymous([("other", 30), ("a", 20)], 10) == [("a", 20), (OTHER, 30)]


def test_single_counts_below_k_are_withheld():
    assert (at_least(9, 10), at_least(10, 10)) == (None, 10)


@given(st.dictionaries(st.text(max_size=5), st.integers(0, 60), max_size=12), st.integers(2, 25))
def test_every_shown_count_is_at_least_k_and_nothing_is_left_to_derive(counts, k):
    shown = k_anonymous(counts.items(), k)
    total = sum(counts.values())
    assert all(n >= k for _, n in shown)
    assert len({v for v, _ in shown}) == len(shown)
    if total >= k:  # all accounted for: total minus the shown buckets reveals nothing
        assert sum(n for _, n in shown) == total
    else:
        assert shown == []
