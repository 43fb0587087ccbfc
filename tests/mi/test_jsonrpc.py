"""The JSON-RPC resource through real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from uacregistrant.mi.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Command,
    CommandTable,
    MIError,
    MIResource,
    StreamedList,
)
from uacregistrant.mi.metrics import Metrics, MetricsResource
from uacregistrant.mi.site import build_root, make_site

TRIPLE = ("aor", "contact", "registrar")
SECRET = "hunter2-secret"


@dataclass
class Server:
    url: str
    port: Any
    factory: "ClosingFactory"
    calls: list[tuple[str, str]]
    seen: list[dict[str, Any]]
    pending: list[defer.Deferred[Any]] = field(default_factory=list)


class ClosingFactory(WrappingFactory):
    """Tells the test when a server-side connection has gone."""

    def __init__(self, wrapped: protocol.Factory) -> None:
        super().__init__(wrapped)
        self.closed: list[defer.Deferred[None]] = []

    def unregisterProtocol(self, p: protocol.Protocol) -> None:
        super().unregisterProtocol(p)
        waiting, self.closed = self.closed, []
        for d in waiting:
            d.callback(None)

    def next_close(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.closed.append(d)
        return d


def make_table(seen: list[dict[str, Any]], pending: list[defer.Deferred[Any]]) -> CommandTable:
    def echo(params: dict[str, Any]) -> object:
        seen.append(params)
        return {"params": params}

    def fail_mi(params: dict[str, Any]) -> object:
        raise MIError(404, "No such registrant", "extra data")

    def crash(params: dict[str, Any]) -> object:
        raise RuntimeError("password=" + SECRET)

    def later(params: dict[str, Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        pending.append(d)
        return d

    def unencodable(params: dict[str, Any]) -> object:
        return {"x": object()}

    def stream(params: dict[str, Any]) -> StreamedList:
        count = int(params["count"])
        return StreamedList("Records", ({"AOR": f"sip:{i}@x", "n": i} for i in range(count)))

    def broken_stream(params: dict[str, Any]) -> StreamedList:
        def items():
            yield {"ok": 1}
            raise RuntimeError("boom")

        return StreamedList("Records", items())

    table = CommandTable()
    table.add(Command("reg_list", echo, ((), TRIPLE), aliases=("uac_registrant:list",)))
    table.add(Command("reg_enable", echo, (TRIPLE,)))
    table.add(Command("reg_upsert", echo, ((*TRIPLE, "proxy?", "expiry?"),)))
    table.add(Command("two_sets", echo, (("a", "b"), ("c", "d"), ("x", "y?"))))
    table.add(Command("reg_none", lambda params: None))
    table.add(Command("fail_mi", fail_mi))
    table.add(Command("crash", crash))
    table.add(Command("later", later))
    table.add(Command("unencodable", unencodable))
    table.add(Command("stream", stream, (("count",),)))
    table.add(Command("broken_stream", broken_stream))
    return table


async def start_server(**kwargs: Any) -> Server:
    seen: list[dict[str, Any]] = []
    pending: list[defer.Deferred[Any]] = []
    calls: list[tuple[str, str]] = []
    mi = MIResource(
        make_table(seen, pending), on_call=lambda m, r: calls.append((m, r)), **kwargs
    )
    factory = ClosingFactory(make_site(build_root(mi, MetricsResource(Metrics()))))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/mi"
    return Server(url, port, factory, calls, seen, pending)


@pytest_twisted.async_yield_fixture
async def server():
    s = await start_server()
    try:
        yield s
    finally:
        await s.port.stopListening()


async def post(url: str, body: bytes | dict[str, Any], headers: dict[bytes, list[bytes]] | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {b"Content-Type": [b"application/json"], **(headers or {})}
    response = await treq.post(url, data=data, headers=hdrs, persistent=False)
    content = await treq.content(response)
    return response, content


async def call(url: str, method: str, params: Any = None, request_id: Any = "1", **extra: Any):
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    body.update(extra)
    response, content = await post(url, body)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"Content-Type") == [b"application/json"]
    return json.loads(content)


def error_of(reply: dict[str, Any]) -> tuple[int, str, Any]:
    assert "result" not in reply
    error = reply["error"]
    return error["code"], error["message"], error.get("data")


@pytest_twisted.ensureDeferred
async def test_which_lists_commands_aliases_and_itself(server):
    reply = await call(server.url, "which", {})
    assert reply["result"][:3] == ["reg_list", "uac_registrant:list", "reg_enable"]
    assert "which" in reply["result"]
    assert server.calls == [("which", "ok")]


@pytest.mark.parametrize("params", [None, {}, []])
@pytest_twisted.ensureDeferred
async def test_absent_or_empty_params_bind_to_the_empty_set(server, params):
    reply = await call(server.url, "reg_list", params)
    assert reply == {"jsonrpc": "2.0", "result": {"params": {}}, "id": "1"}


@pytest_twisted.ensureDeferred
async def test_positional_triple_binds_by_position(server):
    reply = await call(server.url, "uac_registrant:list", ["sip:a@b", "sip:a@h", "sip:r"], request_id=7)
    assert reply["result"]["params"] == {"aor": "sip:a@b", "contact": "sip:a@h", "registrar": "sip:r"}
    assert reply["id"] == 7
    assert server.calls == [("reg_list", "ok")]


@pytest_twisted.ensureDeferred
async def test_named_triple_and_json_values_kept(server):
    params = {"registrar": "sip:r", "aor": "sip:a@b", "contact": 5}
    reply = await call(server.url, "reg_enable", params)
    assert reply["result"]["params"] == params


@pytest.mark.parametrize(
    "params, bound",
    [
        (["a", "c", "r"], {"aor": "a", "contact": "c", "registrar": "r"}),
        (["a", "c", "r", "p"], {"aor": "a", "contact": "c", "registrar": "r", "proxy": "p"}),
        (
            ["a", "c", "r", "p", 60],
            {"aor": "a", "contact": "c", "registrar": "r", "proxy": "p", "expiry": 60},
        ),
        ({"aor": "a", "contact": "c", "registrar": "r", "expiry": "60"}, None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_optional_names(server, params, bound):
    reply = await call(server.url, "reg_upsert", params)
    assert reply["result"]["params"] == (bound if bound is not None else params)


@pytest_twisted.ensureDeferred
async def test_positional_prefers_sets_without_optionals_in_declared_order(server):
    reply = await call(server.url, "two_sets", [1, 2])
    assert reply["result"]["params"] == {"a": 1, "b": 2}
    reply = await call(server.url, "two_sets", [1])
    assert reply["result"]["params"] == {"x": 1}
    reply = await call(server.url, "two_sets", {"c": 1, "d": 2})
    assert reply["result"]["params"] == {"c": 1, "d": 2}


@pytest.mark.parametrize(
    "method, params, data",
    [
        ("reg_enable", [], "Too few or too many parameters"),
        ("reg_enable", ["a", "b"], "Too few or too many parameters"),
        ("reg_list", ["a", "b", "c", "d"], "Too few or too many parameters"),
        ("reg_enable", {"aor": "a", "contact": "c", "registar": "r"}, "Named parameters do not match"),
        ("reg_enable", {"aor": "a"}, "Too few or too many parameters"),
        ("reg_upsert", {"aor": "a", "contact": "c", "registrar": "r", "bogus": 1}, "Named parameters do not match"),
        ("reg_upsert", ["a", "c", "r", "p", 60, "extra"], "Too few or too many parameters"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_params(server, method, params, data):
    reply = await call(server.url, method, params)
    assert error_of(reply) == (INVALID_PARAMS, "Invalid params", data)
    assert reply["id"] == "1"
    assert server.seen == []
    assert server.calls == [(method, "error")]


@pytest.mark.parametrize("body", [b" ", b"{", b"not json", b'{"jsonrpc": "2.0", "method": }', b"\xff\xfe"])
@pytest_twisted.ensureDeferred
async def test_parse_error(server, body):
    response, content = await post(server.url, body)
    assert response.code == 200
    reply = json.loads(content)
    assert error_of(reply)[:2] == (PARSE_ERROR, "Parse error")
    assert reply["id"] is None
    assert server.calls == [("<invalid>", "error")]


@pytest_twisted.ensureDeferred
async def test_an_empty_body_is_an_http_400_as_in_mi_http(server):
    """Matched: OpenSIPS modules/mi_http/mi_http.c, ``mi_json_answer_to_connection``:
    ``if (upload_data_size == 0) { LM_ERR("empty request\\n"); ...
    return MI_HTTP_BAD_REQUEST_CODE; }`` with ``#define MI_HTTP_BAD_REQUEST_CODE 400``
    and no page (``page->len = 0``)."""
    response, content = await post(server.url, b"")
    assert (response.code, content) == (400, b"")
    assert server.calls == [("<invalid>", "error")]


@pytest_twisted.ensureDeferred
async def test_non_ascii_text_goes_out_as_utf_8(server):
    """Matched: OpenSIPS prints MI replies with cJSON (mi/mi.c, ``print_mi_response``:
    ``cJSON_PrintPreallocated(resp, buf->s, buf->len, pretty)``), which copies
    UTF-8 text as is; only control characters, quote and backslash are escaped."""
    response, content = await post(server.url, {"jsonrpc": "2.0", "id": "1", "method": "two_sets",
                                                "params": ["sip:jürgen@example.test"]})
    assert response.code == 200
    assert "sip:jürgen@example.test".encode("utf-8") in content
    assert b"\\u" not in content
    assert json.loads(content)["result"] == {"params": {"x": "sip:jürgen@example.test"}}


@pytest.mark.parametrize(
    "body",
    [
        [{"jsonrpc": "2.0", "id": "1", "method": "reg_list"}],
        "reg_list",
        5,
        None,
        {"id": "1", "method": "reg_list"},
        {"jsonrpc": "1.0", "id": "1", "method": "reg_list"},
        {"jsonrpc": 2.0, "id": "1", "method": "reg_list"},
        {"jsonrpc": "2.0", "id": "1"},
        {"jsonrpc": "2.0", "id": "1", "method": 5},
        {"jsonrpc": "2.0", "id": "1", "method": "reg_list", "params": "sip:a@b"},
        {"jsonrpc": "2.0", "id": True, "method": "reg_list"},
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "reg_list"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_request(server, body):
    response, content = await post(server.url, json.dumps(body).encode())
    assert response.code == 200
    assert error_of(json.loads(content))[:2] == (INVALID_REQUEST, "Invalid Request")
    assert server.seen == []


@pytest_twisted.ensureDeferred
async def test_unknown_method(server):
    reply = await call(server.url, "reg_nope", [])
    assert error_of(reply) == (METHOD_NOT_FOUND, "Method not found", None)
    assert server.calls == [("<unknown>", "error")]


@pytest_twisted.ensureDeferred
async def test_handler_mi_error_passes_through(server):
    reply = await call(server.url, "fail_mi", request_id="42")
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": 404, "message": "No such registrant", "data": "extra data"},
        "id": "42",
    }
    assert server.calls == [("fail_mi", "error")]


@pytest_twisted.ensureDeferred
async def test_handler_exception_is_internal_error_without_its_text(server):
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        response, content = await post(server.url, {"jsonrpc": "2.0", "id": 1, "method": "crash"})
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert response.code == 200
    assert SECRET.encode() not in content
    assert error_of(json.loads(content)) == (INTERNAL_ERROR, "Internal error", None)
    failures = [e for e in events if "log_failure" in e]
    assert [e["log_level"] for e in failures] == [LogLevel.error]
    assert failures[0]["log_failure"].check(RuntimeError)


@pytest_twisted.ensureDeferred
async def test_unencodable_result_is_internal_error(server):
    reply = await call(server.url, "unencodable")
    assert error_of(reply)[0] == INTERNAL_ERROR


@pytest_twisted.ensureDeferred
async def test_none_result_is_sent_as_ok(server):
    reply = await call(server.url, "reg_none", {})
    assert reply == {"jsonrpc": "2.0", "result": "OK", "id": "1"}


@pytest_twisted.ensureDeferred
async def test_deferred_result_and_deferred_mi_error(server):
    replied = defer.ensureDeferred(call(server.url, "later"))
    while not server.pending:
        await task.deferLater(reactor, 0, lambda: None)
    assert not replied.called
    server.pending.pop().callback({"done": True})
    assert (await replied)["result"] == {"done": True}

    replied = defer.ensureDeferred(call(server.url, "later"))
    while not server.pending:
        await task.deferLater(reactor, 0, lambda: None)
    server.pending.pop().errback(MIError(500, "Internal failure"))
    assert error_of(await replied) == (500, "Internal failure", None)
    assert server.calls == [("later", "ok"), ("later", "error")]


class RawClient(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


async def raw_connect(server: Server) -> RawClient:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port.getHost().port)
    return await connectProtocol(endpoint, RawClient())


@pytest_twisted.ensureDeferred
async def test_late_result_after_client_hung_up_is_dropped(server):
    client = await raw_connect(server)
    body = b'{"jsonrpc":"2.0","id":"1","method":"later"}'
    client.transport.write(
        b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    while not server.pending:
        await task.deferLater(reactor, 0, lambda: None)
    closed = server.factory.next_close()
    client.transport.abortConnection()
    await closed
    server.pending.pop().callback({"late": True})
    assert server.calls == [("later", "ok")]
    reply = await call(server.url, "reg_list")
    assert reply["result"] == {"params": {}}


@pytest_twisted.ensureDeferred
async def test_malformed_http_gets_400_and_server_keeps_serving(server):
    client = await raw_connect(server)
    client.transport.write(b"GARBAGE GARBAGE\r\n\x00\x01\r\n\r\n")
    await client.lost
    assert client.received.startswith(b"HTTP/1.1 400 ")
    reply = await call(server.url, "reg_list")
    assert reply["result"] == {"params": {}}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest_twisted.ensureDeferred
async def test_non_post_is_405(server, method):
    response = await treq.request(method, server.url, persistent=False)
    await treq.content(response)
    assert response.code == 405
    assert response.headers.getRawHeaders(b"Allow") == [b"POST"]


@pytest_twisted.ensureDeferred
async def test_mi_subpath_is_served_like_opensips():
    s = await start_server()
    try:
        reply = await call(s.url + "/anything", "reg_list")
        assert reply["result"] == {"params": {}}
    finally:
        await s.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_oversized_body_is_413_with_a_json_rpc_error():
    s = await start_server(max_body=200)
    try:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": "1", "method": "reg_list", "params": ["x" * 300]}
        ).encode()
        response, content = await post(s.url, body)
        assert response.code == 413
        assert error_of(json.loads(content))[0] == INVALID_REQUEST
        assert s.seen == []
        reply = await call(s.url, "reg_list", ["a", "b", "c"])
        assert reply["result"]["params"]["aor"] == "a"
    finally:
        await s.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_notification_gets_202_and_no_body(server):
    response, content = await post(server.url, {"jsonrpc": "2.0", "method": "reg_list"})
    assert (response.code, content) == (202, b"")
    assert server.seen == [{}]


@pytest_twisted.ensureDeferred
async def test_token_required_rejected_and_accepted():
    token = "s3cr3t-token"
    s = await start_server(token=token)
    body = {"jsonrpc": "2.0", "id": "1", "method": "reg_list"}
    try:
        for headers in (
            {},
            {b"Authorization": [b"Bearer wrong"]},
            {b"Authorization": [b"Basic " + token.encode()]},
            {b"Authorization": [b"Bearer " + token.encode() + b"x"]},
        ):
            response, content = await post(s.url, body, headers)
            assert response.code == 401
            assert response.headers.getRawHeaders(b"WWW-Authenticate")[0].startswith(b"Bearer")
            assert token.encode() not in content
            assert error_of(json.loads(content))[0] == 401
        assert s.seen == []
        response, content = await post(s.url, body, {b"Authorization": [b"Bearer " + token.encode()]})
        assert response.code == 200
        assert json.loads(content)["result"] == {"params": {}}
    finally:
        await s.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_streamed_list_of_100000_is_valid_json_and_reactor_keeps_ticking(server):
    ticks = []
    ticker = task.LoopingCall(lambda: ticks.append(None))
    ticker.start(0, now=False)
    try:
        reply = await call(server.url, "stream", ["100000"], request_id=9)
    finally:
        ticker.stop()
    records = reply["result"]["Records"]
    assert len(records) == 100000
    assert records[0] == {"AOR": "sip:0@x", "n": 0}
    assert records[-1]["n"] == 99999
    assert reply["id"] == 9
    # 200 chunks of 500: the reactor must get control back between them.
    assert len(ticks) >= 20


@pytest.mark.parametrize("count", [0, 1, 500, 501])
@pytest_twisted.ensureDeferred
async def test_streamed_list_edges(server, count):
    reply = await call(server.url, "stream", {"count": str(count)})
    assert [r["n"] for r in reply["result"]["Records"]] == list(range(count))


@pytest_twisted.ensureDeferred
async def test_stream_failing_midway_cuts_the_connection(server):
    async def fetch() -> bytes:
        response = await treq.post(
            server.url,
            data=b'{"jsonrpc":"2.0","id":"1","method":"broken_stream"}',
            persistent=False,
        )
        return await treq.content(response)

    # Cut before or after the status line is flushed: never a complete reply.
    with pytest.raises((ResponseFailed, ResponseNeverReceived)):
        await fetch()
    reply = await call(server.url, "reg_list")
    assert reply["result"] == {"params": {}}


@pytest_twisted.ensureDeferred
async def test_access_log_shows_the_path_but_no_query_or_headers(server):
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        await post(
            server.url + "?token=" + SECRET,
            {"jsonrpc": "2.0", "id": "1", "method": "reg_list"},
            {b"Authorization": [b"Bearer " + SECRET.encode()], b"User-Agent": [SECRET.encode()]},
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events]
    assert any('"POST /mi" 200' in line for line in lines)
    assert not any(SECRET in line for line in lines)
