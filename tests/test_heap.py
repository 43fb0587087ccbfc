"""The service process collects young garbage at its own pace; the older generations keep theirs."""

from __future__ import annotations

import gc

from uacregistrant.heap import YOUNG_THRESHOLD, pace_collector


def test_the_young_generation_is_collected_less_often():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        pace_collector()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 11, 12)
        assert YOUNG_THRESHOLD > 700
    finally:
        gc.set_threshold(*before)
