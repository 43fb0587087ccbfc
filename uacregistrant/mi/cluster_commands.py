"""MI commands for the sharing tags: ``shtag_list`` and ``shtag_set_active``."""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred, inlineCallbacks

from ..cluster.locks import split_tag
from ..cluster.shtags import ShtagManager, UnknownTag
from .jsonrpc import Command, CommandTable, MIError, server_error

UNKNOWN_TAG = 404


class ClusterCommands:
    def __init__(self, manager: ShtagManager) -> None:
        self.manager = manager

    def add_to(self, table: CommandTable) -> None:
        table.add(Command("shtag_list", self.shtag_list, ((),)))
        table.add(Command("shtag_set_active", self.shtag_set_active, (("tag",),)))

    @inlineCallbacks
    def shtag_list(self, params: dict[str, object]) -> Deferred:
        rows = yield self.manager.listing()
        tags = []
        for tag, owner, hold in rows:
            name, cluster_id = split_tag(tag)
            tags.append(
                {
                    "tag": name,
                    "cluster_id": cluster_id,
                    "owner": owner.node_id,
                    "since": _when(owner.since),
                    "active_here": hold is not None,
                    # "database": through its lock; "static": kept while the database is away.
                    "held": None if hold is None else ("static" if hold.static else "database"),
                    "held_since": None if hold is None else _when(hold.since),
                }
            )
        return {"Tags": tags}

    @inlineCallbacks
    def shtag_set_active(self, params: dict[str, object]) -> Deferred:
        tag = str(params["tag"]).strip()
        try:
            yield self.manager.set_active(tag)
        except UnknownTag:
            raise MIError(UNKNOWN_TAG, "No such sharing tag", tag) from None
        except Exception as e:
            raise server_error(f"cannot ask for the sharing tag: {e}") from None
        return "OK"


def _when(seconds: float | None) -> str | None:
    return None if seconds is None else time.ctime(seconds)
