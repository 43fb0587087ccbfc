"""The text log line made cheaply is the line Twisted makes, byte for byte."""

from __future__ import annotations

import io

import pytest
from twisted.logger import FileLogObserver, LogLevel, formatEventAsClassicLogText, formatTime
from twisted.python.failure import Failure

from uacregistrant.logs import classic_text

STATE = (
    "state aor={aor} binding={binding} registrar={registrar} old={old} new={new}"
    " code={code} reason={reason!r}"
)


def _failure() -> Failure:
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()


class _Thing:
    name = "thing"

    def describe(self) -> str:
        return "described"


EVENTS = [
    dict(log_format=STATE, log_time=1_700_000_000.25, log_namespace="uacregistrant.registrant.engine",
         log_level=LogLevel.info, aor="sip:alice@example.test", binding="sip:alice@127.0.0.1:5060",
         registrar="sip:127.0.0.1:5070", old="NOT_REGISTERED_STATE", new="REGISTERED_STATE", code=200,
         reason="OK\nwith a 'quote'"),
    dict(log_format="two\nlines {n:>4}", log_time=1_700_000_000.99, log_namespace="x", log_level=LogLevel.warn, n=7),
    dict(log_format="attribute {thing.name} and index {items[1]}", log_time=5.5, thing=_Thing(), items=[1, 2]),
    dict(log_format="a call {thing.describe()}", log_time=5.5, thing=_Thing(), log_namespace="x",
         log_level=LogLevel.info),
    dict(log_format="missing {nothing}", log_time=6.0, log_namespace="x", log_level=LogLevel.info),
    dict(log_format="positional {}", log_time=6.0),
    dict(log_format="failed {what}", what="it", log_failure=_failure(), log_time=7.0, log_namespace="x",
         log_level=LogLevel.critical),
    dict(log_format="legacy", log_system="-", log_time=8.0),
    dict(log_format="", log_time=9.0),
    dict(log_time=9.0, message="no format"),
    dict(log_format=b"bytes {x}", x=1, log_time=9.0),
    dict(log_format="no time, no namespace, no level"),
]


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_the_line_is_twisteds_line(event):
    expected = formatEventAsClassicLogText(dict(event), formatTime=formatTime)
    assert classic_text(dict(event)) == expected


def test_the_timestamp_follows_the_clock_across_seconds():
    for when in (100.0, 100.7, 101.0, 99.5, 100.2, 3600.0 * 24 * 180):
        event = dict(log_format="x", log_time=when)
        assert classic_text(event) == formatEventAsClassicLogText(event)


def test_an_observer_writes_the_same_bytes():
    ours, theirs = io.StringIO(), io.StringIO()
    FileLogObserver(ours, classic_text)(dict(EVENTS[0]))
    FileLogObserver(theirs, formatEventAsClassicLogText)(dict(EVENTS[0]))
    assert ours.getvalue() == theirs.getvalue() != ""
