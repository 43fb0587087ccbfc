"""The MI server's edge over real HTTP on 127.0.0.1.

Authorization and size are decided on the headers; bodies never touch the
disk; JSON the parser refuses is a JSON-RPC error; idle, slow and surplus
connections are closed.  Timers run on an injected clock.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.hostile.http_client import RawClient, body_of, connect, status_of, until
from uacregistrant.mi.jsonrpc import Command, CommandTable, MIResource, StreamedList
from uacregistrant.mi.metrics import Metrics, MetricsResource
from uacregistrant.mi.site import EdgeSite, HttpLimits, build_root, make_site

TOKEN = "t0ken-for-tests"
AUTH = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
pytestmark = pytest.mark.timeout(30)

LIMITS = HttpLimits(max_body=8192, idle_timeout=10.0, max_connections=3)


@dataclass
class Server:
    port: int
    site: EdgeSite
    clock: task.Clock
    calls: list[dict[str, Any]]
    pending: list[defer.Deferred[Any]]


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    calls: list[dict[str, Any]] = []
    pending: list[defer.Deferred[Any]] = []

    def later(params: dict[str, Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        pending.append(d)
        return d

    table = CommandTable()
    table.add(Command("echo", lambda params: calls.append(params) or "OK", ((), ("x",))))
    table.add(Command("later", later))
    table.add(Command("big", lambda params: StreamedList("Records", ({"AOR": f"sip:{i:08d}@x" * 4}
                                                                      for i in range(300_000)))))
    clock = task.Clock()
    mi = MIResource(table, token=TOKEN, max_body=LIMITS.max_body)
    site = make_site(build_root(mi, MetricsResource(Metrics())), limits=LIMITS, token=TOKEN, reactor=clock)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        yield Server(port.getHost().port, site, clock, calls, pending)
    finally:
        for d in pending:
            if not d.called:
                d.callback("OK")
        await port.stopListening()


def post(body: bytes, *, auth: bool = True, extra: bytes = b"", close: bool = True) -> bytes:
    return (
        b"POST /mi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + (AUTH if auth else b"")
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def call(method: str, request_id: object = 1, **params: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}).encode()


@pytest_twisted.ensureDeferred
async def test_chunked_body_without_token_is_refused_before_any_chunk(server: Server) -> None:
    client = await connect(server.port)
    client.send(b"POST /mi HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    response = await client.closed
    assert status_of(response) == 401
    assert b'WWW-Authenticate: Bearer realm="mi"' in response
    assert json.loads(body_of(response))["error"]["code"] == 401
    assert server.calls == []


@pytest_twisted.ensureDeferred
async def test_huge_content_length_without_token_is_401_at_once(server: Server) -> None:
    client = await connect(server.port)
    client.send(b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"[" * 1000)
    response = await client.closed
    assert status_of(response) == 401


@pytest_twisted.ensureDeferred
async def test_wrong_token_is_401(server: Server) -> None:
    client = await connect(server.port)
    client.send(post(call("echo"), auth=False, extra=b"Authorization: Bearer nope\r\n"))
    assert status_of(await client.closed) == 401
    assert server.calls == []


@pytest_twisted.ensureDeferred
async def test_content_length_over_the_limit_is_413_before_the_body(server: Server) -> None:
    client = await connect(server.port)
    client.send(b"POST /mi HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 1000000000\r\n\r\n")
    response = await client.closed
    assert status_of(response) == 413
    assert json.loads(body_of(response))["error"]["code"] == -32600


@pytest_twisted.ensureDeferred
async def test_chunked_body_is_cut_at_the_limit(server: Server) -> None:
    client = await connect(server.port)
    client.send(b"POST /mi HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n")
    for _ in range(LIMITS.max_body // 0x400):
        client.send(b"400\r\n" + b" " * 0x400 + b"\r\n")
    assert client.received == b""
    client.send(b"400\r\n" + b" " * 0x400 + b"\r\n")
    response = await client.closed
    assert status_of(response) == 413
    assert server.calls == []


@pytest_twisted.ensureDeferred
async def test_bodies_are_never_spooled_to_disk(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_files(*args: object, **kwargs: object) -> object:
        raise AssertionError("a request body went to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_files)
    body = call("echo", x="y" * 3000)
    client = await connect(server.port)
    client.send(post(body, close=False))
    client.send(
        b"POST /mi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH
        + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    )
    response = await client.closed
    assert response.count(b'"result":"OK"') == 2
    assert len(server.calls) == 2


@pytest_twisted.ensureDeferred
async def test_small_authorized_call_works(server: Server) -> None:
    client = await connect(server.port)
    client.send(post(call("echo", x="1")))
    response = await client.closed
    assert status_of(response) == 200
    assert json.loads(body_of(response)) == {"jsonrpc": "2.0", "result": "OK", "id": 1}


async def answer(server: Server, body: bytes) -> dict[str, Any]:
    client = await connect(server.port)
    client.send(post(body))
    response = await client.closed
    decoded = json.loads(body_of(response))
    assert status_of(response) == 200
    assert b"Content-Type: application/json" in response
    return decoded


@pytest_twisted.ensureDeferred
async def test_deep_nesting_is_a_parse_error(server: Server) -> None:
    limits = LIMITS
    deep = b"[" * (limits.max_body - 200)
    assert (await answer(server, deep)) == {
        "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None,
    }


@pytest.mark.parametrize(
    "body",
    ids=["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "5000-digits", "truncated", "not-utf8"],
    argvalues=[
        b'{"jsonrpc":"2.0","method":"echo","id":1e999}',
        b'{"jsonrpc":"2.0","method":"echo","id":-1e999}',
        b'{"jsonrpc":"2.0","method":"echo","id":NaN}',
        b'{"jsonrpc":"2.0","method":"echo","id":Infinity}',
        b'{"jsonrpc":"2.0","method":"echo","params":{"x":-Infinity},"id":1}',
        b'{"jsonrpc":"2.0","method":"echo","id":' + b"9" * 5000 + b"}",  # past int()'s digit limit
        b'{"jsonrpc":"2.0","method":"echo","id":1',
        b"\xff\xfe",
    ],
)
@pytest_twisted.ensureDeferred
async def test_json_the_parser_refuses_is_a_parse_error(server: Server, body: bytes) -> None:
    reply = await answer(server, body)
    assert reply["error"]["code"] == -32700
    assert reply["id"] is None
    assert server.calls == []


@pytest.mark.parametrize("request_id", ["[1]", '{"a":1}', "true"])
@pytest_twisted.ensureDeferred
async def test_invalid_id_is_answered_with_null(server: Server, request_id: str) -> None:
    reply = await answer(server, b'{"jsonrpc":"2.0","method":"echo","id":%s}' % request_id.encode())
    assert reply["error"]["code"] == -32600
    assert reply["id"] is None


@pytest_twisted.ensureDeferred
async def test_idle_connection_is_closed_after_the_timeout(server: Server) -> None:
    client = await connect(server.port)
    server.clock.advance(LIMITS.idle_timeout - 1)
    assert not client.closed.called
    server.clock.advance(2)
    assert (await client.closed) == b""


@pytest_twisted.ensureDeferred
async def test_request_sent_a_byte_at_a_time_is_cut_at_the_timeout(server: Server) -> None:
    client = await connect(server.port)
    request = post(call("echo"))
    for byte in request[:40]:
        client.send(bytes([byte]))
        # Let the server read it: each byte restarts the idle timer, not the deadline.
        await task.deferLater(reactor, 0.01, lambda: None)
        server.clock.advance(LIMITS.idle_timeout / 20)
        if client.closed.called:
            break
    assert client.closed.called
    assert server.calls == []


@pytest_twisted.ensureDeferred
async def test_connection_cap_evicts_the_oldest_idle_connection(server: Server) -> None:
    idle = [await connect(server.port) for _ in range(LIMITS.max_connections)]
    await until(lambda: len(server.site.cap) == LIMITS.max_connections, "every connection accepted")
    newcomer = await connect(server.port)
    await idle[0].closed
    assert not any(c.closed.called for c in idle[1:])
    newcomer.send(post(call("echo")))
    assert status_of(await newcomer.closed) == 200
    assert len(server.site.cap) <= LIMITS.max_connections
    assert server.site.cap.evicted == 1


@pytest_twisted.ensureDeferred
async def test_connection_cap_refuses_when_every_connection_is_busy(server: Server) -> None:
    busy = [await connect(server.port) for _ in range(LIMITS.max_connections)]
    for client in busy:
        client.send(post(call("later")))
    await until(lambda: len(server.pending) == LIMITS.max_connections, "every request being answered")
    refused = await connect(server.port)
    assert (await refused.closed) == b""
    assert server.site.cap.refused == 1
    # The busy ones are answered all the same.
    for d in server.pending:
        d.callback("done")
    for client in busy:
        assert json.loads(body_of(await client.closed))["result"] == "done"


@pytest_twisted.ensureDeferred
async def test_client_that_does_not_read_its_answer_is_cut(server: Server) -> None:
    client = await connect(server.port)
    client.transport.pauseProducing()  # never reads: the server's send buffer fills
    client.send(post(call("big")))
    channel = None
    for _ in range(500):
        await task.deferLater(reactor, 0.01, lambda: None)
        channels = [c for c in server.site.cap._open if c._stalled is not None]
        if channels:
            channel = channels[0]
            break
    assert channel is not None, "the server never saw its send buffer fill"
    assert not channel.busy()
    server.clock.advance(LIMITS.idle_timeout + 1)
    await until(lambda: len(server.site.cap) == 0, "the stalled connection gone")
    client.transport.resumeProducing()
    await client.closed


def test_access_line_escapes_control_characters() -> None:
    from types import SimpleNamespace

    from uacregistrant.mi.site import _access_line

    request = SimpleNamespace(
        method=b"GET", path=b'/\x1b[31mred\x00"x\xff', code=404, sentLength=0,
        getClientAddress=lambda: SimpleNamespace(host="127.0.0.1"),
    )
    line = _access_line("[ts]", request)  # type: ignore[arg-type]
    assert line == '127.0.0.1 - - [ts] "GET /\\x1b[31mred\\x00%22x\\xff" 404 0'
    assert line.isprintable()
