"""Is the database answering?  One cheap query at a fixed interval.

The answer feeds ``/health`` and the ``uac_registrant_database_up`` gauge;
both read the last result, so a flood of health checks never reaches the
database.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from uacregistrant.registrant.record import RecordKey
from uacregistrant.store.interface import IRegistrantStore

# No row has empty key fields (the loader refuses them): the lookup is an
# index probe that finds nothing, on every store.
_NO_SUCH_KEY = RecordKey("", "", "")


class DatabaseProbe:
    """``reachable`` is True once the last lookup answered within ``timeout``."""

    def __init__(
        self, clock: IReactorTime, store: IRegistrantStore, *, interval: float = 5.0, timeout: float = 5.0
    ) -> None:
        self.clock = clock
        self.store = store
        self.timeout = timeout
        self.reachable = False
        self._pending: Deferred | None = None
        self._loop = LoopingCall(self.probe)
        self._loop.clock = clock
        self._interval = interval

    def start(self, reachable: bool = False) -> None:
        """Ask now and every interval; ``reachable`` is what is known until the first answer."""
        self.reachable = reachable
        self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if self._pending is not None:
            self._pending.cancel()

    def probe(self) -> None:
        """One lookup, unless the previous one is still out (it then counts as failed)."""
        if self._pending is not None:
            self.reachable = False
            return
        d = self.store.load_row(_NO_SUCH_KEY)
        d.addTimeout(self.timeout, self.clock)
        self._pending = d
        d.addCallbacks(self._answered, self._failed)

    def _answered(self, _: object) -> None:
        self._pending = None
        self.reachable = True

    def _failed(self, _: object) -> None:
        # Any failure: unavailable, timed out, cancelled at stop.
        self._pending = None
        self.reachable = False
