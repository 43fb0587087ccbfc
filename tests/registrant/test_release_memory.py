"""After a burst of runtime rows the allocator's free pages go back to the system; not during one."""

from __future__ import annotations

import platform

from twisted.internet.task import Clock

from uacregistrant.store.memory import MemoryStore

from uacregistrant.allocator import release_free_memory
from uacregistrant.registrant.persist import RELEASE_AFTER, RuntimeWriter

from .fakes import make_engine, record

TI = 10


def burst(n: int):
    configs = [record(aor=f"sip:u{i}@example.test", binding_uri=f"sip:u{i}@127.0.0.1:5070") for i in range(n)]
    store = MemoryStore(configs)
    clock = Clock()
    released: list[int] = []
    writer = RuntimeWriter(store, clock, delay=1.0, release_memory=lambda: released.append(len(writer._dirty)))
    engine, sender, clock = make_engine(clock, write_ahead=writer.write_ahead)
    engine.subscribe(writer)
    engine.apply(configs)
    engine.start()
    return store, writer, clock, released


def test_released_once_the_rows_of_a_burst_are_written_and_nothing_is_dirty():
    store, writer, clock, released = burst(RELEASE_AFTER)
    clock.pump([0.1] * 10 * TI)
    # Every new dialog written ahead and every REGISTER's transition behind,
    # in several batches: released once nothing was left dirty, not per batch.
    assert released == [0]


def test_not_released_for_a_few_rows():
    store, writer, clock, released = burst(3)
    clock.pump([0.1] * 10 * TI)
    assert released == []


def test_release_free_memory_calls_malloc_trim_on_glibc():
    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
