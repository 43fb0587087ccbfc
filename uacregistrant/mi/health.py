"""``GET /health``: is this node fit to serve?  For load balancers and systemd.

No token and no record data: the answer is whether the table is loaded and
the database answers, and how many records are in each state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from twisted.web.resource import Resource
from twisted.web.server import Request


@dataclass(frozen=True, slots=True)
class Health:
    table_loaded: bool
    database_reachable: bool
    records: Mapping[str, int] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.table_loaded and self.database_reachable

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "status": "ready" if self.ready else "not ready",
                "table_loaded": self.table_loaded,
                "database_reachable": self.database_reachable,
                "records": dict(self.records),
            },
            sort_keys=True,
        ).encode("ascii")


class HealthResource(Resource):
    """200 with the health as JSON when ready, 503 with the same JSON otherwise."""

    isLeaf = True

    def __init__(self, health: Callable[[], Health]) -> None:
        super().__init__()
        self._health = health

    def render_GET(self, request: Request) -> bytes:
        health = self._health()
        request.setResponseCode(200 if health.ready else 503)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return health.to_json()

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)
