"""The bucket scheduler and the global REGISTER rate limit.

Records live in 2^hash_size buckets keyed by a hash of the AOR.  A LoopingCall
fires every timer_interval / buckets seconds and visits one bucket, round
robin, so each record is looked at about once per timer_interval.  Due records
go to a FIFO that a token bucket drains at ``max_register_rate``: a large
bucket or a mass retry never bursts past the rate, and nothing is lost.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Callable, Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .machine import Registrant
from .record import RecordKey
from .states import IN_FLIGHT, State

log = Logger()


def bucket_of(aor: str, buckets: int) -> int:
    # Any stable hash will do: nothing outside sees bucket numbers.
    return zlib.crc32(aor.encode()) & (buckets - 1)


MAX_IN_FLIGHT = 1000


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; rate 0 means no limit.

    The default burst is 50 ms worth: a reactor that was busy for a while
    must not make up for it with one large burst.  A drained bucket is waited
    on for ``batch`` tokens (10 ms worth, at least one): at 2,000/s the
    reactor wakes 100 times a second for 20 REGISTERs each, not 2,000 times
    for one.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: float | None = None) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self.batch = min(self.burst, max(1.0, rate / 100))
        self.tokens = self.burst
        self.stamp = clock.seconds()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait(self) -> float:
        """Seconds until the next ``batch`` of tokens."""
        return max(0.0, (self.batch - self.tokens) / self.rate)


class Scheduler:
    def __init__(
        self,
        clock: IReactorTime,
        *,
        hash_size: int,
        timer_interval: float,
        max_register_rate: float = 0,
        max_in_flight: int = MAX_IN_FLIGHT,
        active: Callable[[Registrant], bool] | None = None,
        visit: Callable[[Registrant], None],
        reclaim: Callable[[Registrant], None],
        on_rate_limited: Callable[[], None] = lambda: None,
    ) -> None:
        self.clock = clock
        self.buckets: list[dict[RecordKey, Registrant]] = [{} for _ in range(2**hash_size)]
        self.period = timer_interval / len(self.buckets)
        self.limiter = TokenBucket(clock, max_register_rate)
        # Whether this node registers the record now (clustering); all by default.
        self.active = active or (lambda registrant: True)
        self.rate_limited = 0
        # Slots of records found in a sending state with nothing in flight.
        self.reclaimed = 0
        # A window on registrations in flight: when replies come late (an
        # overloaded registrar, or this process), fewer new ones start, instead
        # of more retransmissions piling up.
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.on_rate_limited = on_rate_limited
        self.visit = visit
        self.reclaim = reclaim
        self._next_bucket = 0
        # Each record at most once: its ``queued`` flag says whether it is in
        # (a set of keys would keep its peak size, a bucket's worth, for good).
        self._queue: deque[Registrant] = deque()
        self._pump_call: IDelayedCall | None = None
        self._pumping = False
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    # -- the records ------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets)

    def __iter__(self) -> Iterator[Registrant]:
        for bucket in self.buckets:
            yield from bucket.values()

    def get(self, key: RecordKey) -> Registrant | None:
        return self.buckets[bucket_of(key.aor, len(self.buckets))].get(key)

    def add(self, registrant: Registrant) -> None:
        key = registrant.key
        self.buckets[bucket_of(key.aor, len(self.buckets))][key] = registrant

    def remove(self, key: RecordKey) -> Registrant | None:
        registrant = self.buckets[bucket_of(key.aor, len(self.buckets))].pop(key, None)
        if registrant is not None and registrant.queued:
            registrant.queued = False
            self._queue.remove(registrant)
        return registrant

    # -- time ---------------------------------------------------------------------

    def start(self) -> None:
        # The first visit comes one period after start-up: the first REGISTERs
        # are spread over the first timer_interval, bucket by bucket.
        self._loop.start(self.period, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump_call = None
        for registrant in self._queue:
            registrant.queued = False
        self._queue.clear()

    def _tick(self) -> None:
        bucket = self.buckets[self._next_bucket]
        self._next_bucket = (self._next_bucket + 1) % len(self.buckets)
        now = self.clock.seconds()
        leaked = []
        for registrant in bucket.values():
            if registrant.due(now):
                if self.active(registrant):
                    self.enqueue(registrant)
            elif registrant.leaked():
                leaked.append(registrant)
        # The watchdog: a record may never hold a slot with nothing in flight.
        for registrant in leaked:
            self.reclaimed += 1
            self.reclaim(registrant)
        self._kick()

    def visit_now(self, registrant: Registrant) -> None:
        """An operator action: send what is due at once, within the rate limit."""
        self.enqueue(registrant)
        self._kick()

    def enqueue(self, registrant: Registrant) -> None:
        if not registrant.queued:
            registrant.queued = True
            self._queue.append(registrant)

    def note_transition(self, old: State, new: State) -> None:
        """Keep count of registrations in flight; a freed place lets the next one go."""
        if new in IN_FLIGHT:
            if old not in IN_FLIGHT:
                self.in_flight += 1
        elif old in IN_FLIGHT:
            self.in_flight -= 1
            if self._queue and self.in_flight < self.max_in_flight:
                self._kick()

    def _kick(self) -> None:
        # Not while the pump waits for a token, nor from inside the pump itself
        # (a reply that settles synchronously would nest pumps).
        if self._pump_call is None and not self._pumping:
            self._pumping = True
            try:
                self._pump()
            finally:
                self._pumping = False

    def _resume(self) -> None:
        self._pump_call = None
        self._kick()

    def _pump(self) -> None:
        queue = self._queue
        while queue and self.in_flight < self.max_in_flight:
            # A visit that only writes a new dialog ahead puts nothing on the
            # wire: its REGISTER takes the token when it comes back ready.
            if not queue[0].writes_first() and not self.limiter.take():
                self.rate_limited += 1  # one wait for a token
                self.on_rate_limited()
                self._pump_call = self.clock.callLater(self.limiter.wait(), self._resume)
                return
            registrant = queue.popleft()
            registrant.queued = False
            # Still due? An operator or a reply may have acted meanwhile.
            now = self.clock.seconds()
            if registrant.due(now) and self.active(registrant):
                self.visit(registrant)
