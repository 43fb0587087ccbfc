"""What twistd logs: the ``log_level`` filter, and JSON lines for log collectors.

twistd picks its log observer from its own options (``--logfile``,
``--syslog``, ``--logger``) and names a custom one by its dotted name, so the
level filter is put in as such a name: ``use_level`` records what twistd
would have used and points ``--logger`` at ``level_filtered_observer``,
which builds that observer and filters it.

``json_observer`` writes one JSON object per line on stdout:
``twistd --logger uacregistrant.logs.json_observer -n uac-registrant``.

twistd's own text file observer is kept, with ``classic_text`` as its
formatter: the same line, byte for byte, for a fraction of the cost (the line
a record logs when it changes state is on the hot path of a registration).
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    formatTime,
    jsonFileLogObserver,
)
from twisted.python.reflect import namedAny

# Set once by the option parser, read once by twistd when logging starts.
_chosen: dict[str, Any] = {}


def json_observer() -> ILogObserver:
    """Every event as one line of JSON on stdout, its fields as keys."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def use_level(server_options: MutableMapping[str, Any], level: str) -> None:
    """Have twistd keep only events at ``level`` or more severe."""
    _chosen.update(logger=server_options["logger"], level=LogLevel.levelWithName(level),
                   options=server_options)
    server_options["logger"] = f"{__name__}.level_filtered_observer"


def level_filtered_observer() -> ILogObserver:
    """The observer twistd would have used, behind the level filter."""
    if _chosen["logger"] is not None:
        observer = namedAny(_chosen["logger"])()
    else:
        # twistd's own choice from --logfile, --syslog and --nodaemon.
        from twisted.scripts._twistd_unix import UnixAppLogger

        observer = UnixAppLogger(_chosen["options"])._getLogObserver()
        if isinstance(observer, FileLogObserver):
            observer.formatEvent = classic_text
    if not ILogObserver.providedBy(observer):
        observer = LegacyLogObserverWrapper(observer)
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=_chosen["level"])])


class _SecondStamp:
    """``formatTime`` of the last whole second seen: the default format has no fraction."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when)
        second = int(when // 1)
        if second != self.second:
            self.text = formatTime(second)
            self.second = second
        return self.text


_stamp = _SecondStamp()


def classic_text(event: LogEvent) -> str | None:
    """twistd's text line for ``event`` (``formatEventAsClassicLogText``), computed cheaply.

    Twisted formats through ``string.Formatter`` in Python so that a field may
    call (``{name()}``); ``str.format_map`` does the rest in C.  Events that need
    more than a plain template (a call, a failure's traceback, a system name,
    flattened events, anything that does not format) take Twisted's own path,
    so the line is the same whichever way it was made.
    """
    template = event.get("log_format")
    if (
        type(template) is not str
        or "()" in template
        or "log_failure" in event
        or "log_flattened" in event
        or "log_system" in event
    ):
        return formatEventAsClassicLogText(event, formatTime=_stamp)
    try:
        text = template.format_map(event)
    except Exception:
        return formatEventAsClassicLogText(event, formatTime=_stamp)
    if not text:
        return None
    level = event.get("log_level")
    system = "{}#{}".format(event.get("log_namespace", "-"), "-" if level is None else level.name)
    return "{} [{}] {}\n".format(_stamp(event.get("log_time")), system, text.replace("\n", "\n\t"))
