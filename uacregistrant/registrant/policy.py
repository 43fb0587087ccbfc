"""When to refresh and when to retry: pure functions of time and counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timing:
    """The scheduling parameters every record shares."""

    timer_interval: float = 100
    reregister_expiry_percentage: int = 100
    failure_retry_interval: float = 0
    retry_backoff_cap: float = 3600
    max_auth_failures: int = 3


CREDENTIALS_FACTOR = 4

# The shortest granted expiry we schedule by, unless we asked for less: a
# registrar granting a few seconds must not make us refresh every few seconds.
MIN_GRANTED_EXPIRES = 60


def scheduled_expiry(granted: int, asked: int, timing: Timing) -> int:
    """The expiry a refresh is scheduled by: ``granted``, raised to
    max(timer_interval, 60 s) or to ``asked`` when that is less."""
    floor = min(asked, max(int(timing.timer_interval), MIN_GRANTED_EXPIRES))
    return granted if granted >= floor else floor


def refresh_at(granted_at: float, expires: int, timing: Timing) -> float:
    """The time from which the next bucket visit refreshes the binding.

    A visit comes at most ``timer_interval`` after this moment, so the
    refresh leaves at least another ``timer_interval`` before the share P of
    the expiry runs out: T + E·P/100 − 2·TI.
    """
    share = expires * timing.reregister_expiry_percentage / 100
    return max(granted_at, granted_at + share - 2 * timing.timer_interval)


def retry_delay(
    expiry: int,
    failures: int,
    timing: Timing,
    jitter: float,
    retry_after: int | None = None,
    *,
    credentials: bool = False,
) -> float:
    """Seconds to wait before the next attempt after ``failures`` failures in a row.

    The base is ``failure_retry_interval`` (the record's expiry when 0),
    doubled for each further failure up to ``retry_backoff_cap`` (the shape
    of RFC 5626 §4.5; a cap of 0 keeps the base).  ``jitter`` in [0, 1)
    spreads the wait over its upper half so that records failing together
    do not retry together.  A Retry-After from the registrar always wins
    when it is longer.  Credential failures (a second challenge, 403) wait
    four times longer: trying again soon only feeds a registrar's
    anti-brute-force lock.
    """
    base = (timing.failure_retry_interval or expiry) * (CREDENTIALS_FACTOR if credentials else 1)
    delay = base
    if timing.retry_backoff_cap > 0 and failures > 1:
        delay = min(base * 2 ** min(failures - 1, 30), max(base, timing.retry_backoff_cap))
    delay *= 0.5 + jitter / 2
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay
