"""records.json's query, sort and filters over availability figures, without HTTP.

The records carry availability figures a test sets (as a restart restores
them), which reg_list shows as ``availability``, ``flaps`` and ``last_outage``.
"""

from __future__ import annotations

import pytest

from tests.registrant.fakes import make_engine, record
from uacregistrant.mi.listing import Listing
from uacregistrant.mi.status import (
    FLAPPING_MIN_FLAPS,
    FLAPPING_WINDOW,
    Query,
    QueryError,
    flapping,
    select,
)
from uacregistrant.registrant.states import State

from .lab import figures, set_figures

NOW = 1_700_000_000.0
HOUR = 3600.0


FIGURES = {
    # Fell out 5 times, out now.
    "sip:down@example.test": figures(0.5, 5, (NOW - 120, None, "timeout")),
    # Fell out 3 times, the last an hour ago.
    "sip:shaky@example.test": figures(0.9, 3, (NOW - 2 * HOUR, NOW - HOUR, "503 Service Unavailable")),
    # Fell out twice, the last long ago: not flapping any more.
    "sip:settled@example.test": figures(0.99, 2, (NOW - 3 * FLAPPING_WINDOW, NOW - 2 * FLAPPING_WINDOW, "timeout")),
    # Once, just now: an outage, not flapping.
    "sip:once@example.test": figures(0.75, 1, (NOW - 60, NOW - 30, "transport error: connection refused")),
    "sip:steady@example.test": figures(1.0),
    # Never enabled long enough for a figure.
    "sip:fresh@example.test": figures(None),
}


@pytest.fixture
def setup():
    engine, _sender, clock = make_engine(hash_size=2)
    clock.advance(NOW)
    for aor in [*FIGURES, "sip:plain@example.test"]:
        user = aor.split(":")[1].split("@")[0]
        engine.upsert(record(aor=aor, binding_uri=f"sip:{user}@127.0.0.1:5070"))
    set_figures(engine, FIGURES)
    return engine, CountingListing(engine)


class CountingListing(Listing):
    """Counts the reg_list entries it builds."""

    built = 0

    def view(self, registrant):
        self.built += 1
        return super().view(registrant)


def query(**args) -> Query:
    return Query.from_args({name.encode(): [str(value).encode()] for name, value in args.items()})


def aors(body) -> list[str]:
    return [entry["AOR"] for entry in body["records"]]


@pytest.mark.parametrize("value, on", [("", False), ("0", False), ("1", True), (" 1 ", True)])
def test_flapping_parameter(value, on):
    assert query(flapping=value).flapping is on


@pytest.mark.parametrize("value", ["2", "yes", "true", "-1", "01", "on"])
def test_bad_flapping_parameter_is_refused(value):
    with pytest.raises(QueryError, match="flapping"):
        query(flapping=value)


@pytest.mark.parametrize("sort", ["availability", "flaps"])
def test_figure_sorts_are_accepted(sort):
    assert query(sort=sort).sort == sort


def test_availability_sorts_worst_first_and_records_without_a_figure_last(setup):
    engine, listing = setup
    body = select(engine, query(sort="availability"), listing)
    assert aors(body) == [
        "sip:down@example.test", "sip:once@example.test", "sip:shaky@example.test",
        "sip:settled@example.test", "sip:steady@example.test",
        "sip:fresh@example.test", "sip:plain@example.test",
    ]
    body = select(engine, query(sort="availability", desc=1), listing)
    assert aors(body)[:5] == [
        "sip:steady@example.test", "sip:settled@example.test", "sip:shaky@example.test",
        "sip:once@example.test", "sip:down@example.test",
    ]
    # Still last when descending: "no figure" is not "the best figure".
    assert set(aors(body)[5:]) == {"sip:fresh@example.test", "sip:plain@example.test"}
    assert body["records"][0]["availability"] == 1.0


def test_flaps_sort(setup):
    engine, listing = setup
    body = select(engine, query(sort="flaps", desc=1, limit=3), listing)
    assert aors(body) == ["sip:down@example.test", "sip:shaky@example.test", "sip:settled@example.test"]
    assert [entry["flaps"] for entry in body["records"]] == [5, 3, 2]
    body = select(engine, query(sort="flaps"), listing)
    assert [entry["flaps"] for entry in body["records"]] == [0, 0, 0, 1, 2, 3, 5]


def test_flapping_filter(setup):
    engine, listing = setup
    body = select(engine, query(flapping=1, sort="aor"), listing)
    assert aors(body) == ["sip:down@example.test", "sip:shaky@example.test"]
    assert body["matched"] == 2 and body["total"] == 7
    body = select(engine, query(flapping=1, q="shaky"), listing)
    assert aors(body) == ["sip:shaky@example.test"]
    body = select(engine, query(flapping=1, state="REGISTERED_STATE"), listing)
    assert aors(body) == []
    body = select(engine, query(flapping=0), listing)
    assert body["matched"] == 7


def test_flapping_rule():
    recent = (NOW - 10, NOW - 5, "timeout")
    assert flapping(figures(0.9, FLAPPING_MIN_FLAPS, recent), NOW)
    assert not flapping(figures(0.9, FLAPPING_MIN_FLAPS - 1, recent), NOW)
    ongoing = (NOW - 10 * FLAPPING_WINDOW, None, "timeout")
    assert flapping(figures(0.1, 7, ongoing), NOW)
    edge = (NOW - 2 * FLAPPING_WINDOW, NOW - FLAPPING_WINDOW, "timeout")
    assert flapping(figures(0.9, 2, edge), NOW)
    assert not flapping(figures(0.9, 2, edge), NOW + 1)
    assert not flapping(figures(1.0), NOW)
    assert not flapping(figures(None), NOW)


def test_only_the_page_is_made_into_entries(setup):
    engine, listing = setup
    for args in ({"sort": "aor"}, {"sort": "availability"}, {"sort": "flaps", "desc": 1}, {"flapping": 1}):
        listing.built = 0
        select(engine, query(limit=2, **args), listing)
        assert listing.built == 2, args


def test_a_figure_sort_on_the_heap_path_agrees_with_a_full_sort():
    engine, _sender, clock = make_engine(hash_size=2)
    clock.advance(NOW)
    figures_by_aor = {}
    for i in range(400):
        aor = f"sip:u{i:03d}@example.test"
        engine.upsert(record(aor=aor, binding_uri=f"sip:u{i:03d}@127.0.0.1:5070"))
        figures_by_aor[aor] = figures(None if i % 7 == 0 else (i * 37 % 101) / 100, i % 5)
    set_figures(engine, figures_by_aor)
    listing = Listing(engine)
    for sort in ("availability", "flaps"):
        for desc in (0, 1):
            first = select(engine, query(sort=sort, desc=desc, limit=10), listing)  # 10 * 8 < 400: a heap
            whole = select(engine, query(sort=sort, desc=desc, limit=400), listing)
            assert aors(first) == aors(whole)[:10]


def test_records_without_a_figure_yet_sort_by_aor_and_never_flap():
    engine, _sender, clock = make_engine(hash_size=2)
    for user in ("b", "a"):
        engine.upsert(record(aor=f"sip:{user}@example.test", binding_uri=f"sip:{user}@127.0.0.1:5070"))
    listing = Listing(engine)
    body = select(engine, query(sort="availability"), listing)
    assert aors(body) == ["sip:a@example.test", "sip:b@example.test"]
    assert select(engine, query(flapping=1), listing)["matched"] == 0
    assert {r.state for r in engine} == {State.NOT_REGISTERED_STATE}


@pytest.mark.parametrize("desc", [0, 1])
def test_records_without_a_reply_or_a_tag_sort_last_both_ways(desc):
    engine, _sender, _clock = make_engine(hash_size=2)
    for user, tag in (("a", None), ("b", "vip/1"), ("c", "edge/2"), ("d", None)):
        engine.upsert(record(aor=f"sip:{user}@example.test", binding_uri=f"sip:{user}@127.0.0.1:5070",
                             cluster_shtag=tag))
    for registrant in engine:
        registrant.last_code = {"sip:b@example.test": 200, "sip:c@example.test": 503}.get(registrant.config.aor)
    listing = Listing(engine)
    for sort in ("last_code", "shtag"):
        body = select(engine, query(sort=sort, desc=desc), listing)
        assert set(aors(body)[:2]) == {"sip:b@example.test", "sip:c@example.test"}, sort
        assert set(aors(body)[2:]) == {"sip:a@example.test", "sip:d@example.test"}, sort
