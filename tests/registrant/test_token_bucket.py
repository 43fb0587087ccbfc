"""The REGISTER rate limit: the rate holds, and a drained bucket is waited on for a batch of tokens."""

from __future__ import annotations

from twisted.internet.task import Clock

from uacregistrant.registrant.scheduler import TokenBucket


def _drain(bucket: TokenBucket) -> int:
    taken = 0
    while bucket.take():
        taken += 1
    return taken


def test_a_drained_bucket_is_waited_on_for_10_ms_of_tokens():
    clock = Clock()
    bucket = TokenBucket(clock, 2000)
    assert _drain(bucket) == 100  # 50 ms worth saved up
    wait = bucket.wait()
    assert abs(wait - 0.010) < 1e-9
    clock.advance(wait)
    assert _drain(bucket) == 20


def test_the_rate_holds_over_a_second_of_batches():
    clock = Clock()
    bucket = TokenBucket(clock, 2000)
    taken = _drain(bucket)
    wakeups = 0
    while clock.seconds() < 1.0:
        clock.advance(bucket.wait())
        wakeups += 1
        taken += _drain(bucket)
    assert 2050 <= taken <= 2120  # 100 saved up, then 2,000 a second
    assert 95 <= wakeups <= 110  # not 2,000


def test_a_slow_rate_still_waits_for_one_token():
    clock = Clock()
    bucket = TokenBucket(clock, 2)
    assert _drain(bucket) == 1
    assert bucket.wait() == 0.5
    clock.advance(0.5)
    assert _drain(bucket) == 1
