"""What twistd logs: the ``log_level`` filter, and JSON lines for log collectors.

twistd picks its log observer from its own options (``--logfile``,
``--syslog``, ``--logger``) and names a custom one by its dotted name, so the
level filter is put in as such a name: ``use_level`` records what twistd
would have used and points ``--logger`` at ``level_filtered_observer``,
which builds that observer and filters it.

``json_observer`` writes one JSON object per line on stdout:
``twistd --logger uacregistrant.logs.json_observer -n uac-registrant``.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    LogLevelFilterPredicate,
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
    if not ILogObserver.providedBy(observer):
        observer = LegacyLogObserverWrapper(observer)
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=_chosen["level"])])
