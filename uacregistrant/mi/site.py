"""The HTTP server on ``mi_listen``: ``/mi``, ``/metrics`` and any extra pages."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import Site

from uacregistrant.mi.jsonrpc import MIResource
from uacregistrant.mi.metrics import MetricsResource


def build_root(
    mi: MIResource,
    metrics: MetricsResource,
    extra: Mapping[bytes, Resource] = MappingProxyType({}),
) -> Resource:
    """``/mi`` (and ``/mi/...``, as OpenSIPS accepts), ``/metrics``, then ``extra``."""
    root = Resource()
    root.putChild(b"mi", mi)
    root.putChild(b"metrics", metrics)
    for path, resource in extra.items():
        root.putChild(path, resource)
    return root


def _access_line(timestamp: str, request: Request) -> str:
    # Path only: no query string, headers or body, which could carry a token
    # or credentials.
    client = request.getClientAddress()
    host = getattr(client, "host", "-")
    method = _printable(request.method)
    path = _printable(request.path)
    return f'{host} - - {timestamp} "{method} {path}" {request.code} {request.sentLength}'


def _printable(raw: bytes) -> str:
    return raw.decode("ascii", "backslashreplace").replace('"', "%22")


def make_site(root: Resource) -> Site:
    site = Site(root, logFormatter=_access_line)
    site.noisy = False
    return site
