"""The garbage collector's pace, set once by the process that runs the service.

A registration allocates a few hundred short-lived container objects (the
parsed reply, its headers, the transaction, callbacks).  At CPython's default
of a young collection every 700 allocations, a burst of first registrations
collects several hundred times, promotes live transients into the older
generations and sets off full collections that walk every record; at 10,000
the same burst collects a few dozen times and no full collection runs (see
bench/README.rst).  Cyclic garbage lives until the next young collection:
10,000 allocations later, a few milliseconds during a burst.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def pace_collector() -> None:
    """Collect the young generation every ``YOUNG_THRESHOLD`` allocations; the older ones as before."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
