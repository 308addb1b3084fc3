"""Token buckets and client addresses, unit by unit, on a clock the test moves."""

from __future__ import annotations

import pytest

from router.config import LimitsConfig, RateLimitConfig
from router.errors import TooManyRequests
from router.ratelimit import RateLimits, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_grants_its_burst_then_says_when_the_next_token_comes():
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, max_keys=10, clock=clock)
    assert [buckets.take({b"k": 1}) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take({b"k": 1}) == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take({b"k": 1}) == 0.0


def test_a_bucket_refills_no_higher_than_its_burst():
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, max_keys=10, clock=clock)
    buckets.take({b"k": 2})
    clock.now += 3600
    assert buckets.take({b"k": 2}) == 0.0
    assert buckets.take({b"k": 1}) == pytest.approx(1.0)


def test_taking_from_several_buckets_is_all_or_none():
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, max_keys=10, clock=clock)
    buckets.take({b"a": 2})
    assert buckets.take({b"a": 1, b"b": 2}) > 0
    assert buckets.take({b"b": 2}) == 0.0  # b lost nothing to the refused request


def test_more_than_a_burst_at_once_is_granted_from_a_full_bucket_only():
    buckets = TokenBuckets(rate=1.0, burst=2, max_keys=10, clock=Clock())
    assert buckets.take({b"k": 5}) == 0.0
    assert buckets.take({b"k": 5}) == pytest.approx(2.0)


def test_memory_is_bounded_and_the_least_recently_used_bucket_is_forgotten():
    clock = Clock()
    buckets = TokenBuckets(rate=0.001, burst=1, max_keys=3, clock=clock)
    for key in (b"a", b"b", b"c"):
        buckets.take({key: 1})
    buckets.take({b"d": 1})
    assert len(buckets) == 3
    assert buckets.take({b"a": 1}) == 0.0  # forgotten, so full again: errs on the client's side
    assert buckets.take({b"c": 1}) > 0  # still remembered: empty


def limits(**kw) -> RateLimits:
    return RateLimits(LimitsConfig(**kw), clock=Clock())


def test_per_ip_limit_raises_429_with_retry_after():
    rl = limits(per_ip=RateLimitConfig(rate=1, per=60))
    rl.check_client("198.51.100.7")
    with pytest.raises(TooManyRequests) as info:
        rl.check_client("198.51.100.7")
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(60)
    rl.check_client("198.51.100.8")  # another client has its own bucket


def test_ipv6_clients_are_limited_by_their_64_prefix():
    rl = limits(per_ip=RateLimitConfig(rate=1, per=60))
    rl.check_client("2001:db8:1:2::1")
    with pytest.raises(TooManyRequests):
        rl.check_client("2001:db8:1:2:ffff::9")
    rl.check_client("2001:db8:1:3::1")


def test_buckets_hold_neither_the_address_nor_the_installation_id():
    rl = limits(per_ip=RateLimitConfig(rate=5), per_installation=RateLimitConfig(rate=5))
    rl.check_client("198.51.100.7")
    rl.check_installations(["raw-installation-id-123"])
    held = b"".join(rl.per_ip._buckets) + b"".join(rl.per_installation._buckets)
    assert b"198.51.100.7" not in held and b"raw-installation-id" not in held
    assert all(len(k) == 16 for k in [*rl.per_ip._buckets, *rl.per_installation._buckets])


def test_per_installation_counts_events_and_ignores_events_without_an_id():
    rl = limits(per_installation=RateLimitConfig(rate=2, per=3600))
    rl.check_installations(["a", "a", None, ""])
    with pytest.raises(TooManyRequests):
        rl.check_installations(["a"])
    rl.check_installations(["b", None])


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),  # through our proxy
        ("10.0.0.5", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # a forged left end is ignored
        ("10.0.0.5", "203.0.113.9, 10.0.0.7", "203.0.113.9"),  # two proxies of ours
        ("198.51.100.1", "203.0.113.9", "198.51.100.1"),  # not a proxy: header ignored
        ("10.0.0.5", None, "10.0.0.5"),
    ],
)
def test_client_ip_reads_x_forwarded_for_only_from_trusted_proxies(remote, forwarded, client):
    rl = limits(trusted_proxies=("10.0.0.0/8",))
    assert rl.client_ip(remote, forwarded) == client


def test_reload_keeps_the_buckets_of_an_unchanged_limit_and_resets_a_changed_one():
    rl = limits(per_ip=RateLimitConfig(rate=1, per=60), per_installation=RateLimitConfig(rate=1))
    rl.check_client("198.51.100.7")
    rl.check_installations(["a"])
    new = rl.reconfigured(
        LimitsConfig(
            per_ip=RateLimitConfig(rate=1, per=60), per_installation=RateLimitConfig(rate=9)
        )
    )
    with pytest.raises(TooManyRequests):
        new.check_client("198.51.100.7")
    new.check_installations(["a"])
