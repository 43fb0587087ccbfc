"""Cutting MI FIFO requests out of the byte stream (pure code)."""

from __future__ import annotations

import json

import pytest

from uacregistrant.mi.fifo_frames import BadRequest, FifoFramer, Request


def cli_request(name: str, method: str = "reg_list", params: object = None, request_id: str = "123") -> bytes:
    """What opensips-cli writes: ``:<reply fifo>:`` then json.dumps of the call, no newline."""
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
    return f":{name}:{json.dumps(body)}".encode()


def body_of(frame) -> dict:
    assert isinstance(frame, Request), frame
    return json.loads(frame.body)


def test_one_request_as_opensips_cli_writes_it():
    framer = FifoFramer(1 << 16)
    [frame] = framer.feed(cli_request("opensips_fifo_reply_42_1_5"))
    assert frame.reply_name == "opensips_fifo_reply_42_1_5"
    assert body_of(frame)["method"] == "reg_list"
    assert framer.end() == []


def test_requests_back_to_back_in_one_read_and_one_split_byte_by_byte():
    framer = FifoFramer(1 << 16)
    frames = framer.feed(cli_request("a", request_id="1") + b"\n" + cli_request("b", request_id="2"))
    assert [(f.reply_name, body_of(f)["id"]) for f in frames] == [("a", "1"), ("b", "2")]
    data = cli_request("c", "reg_enable", {"aor": "sip:a@b"})
    got = [f for byte in data for f in framer.feed(bytes([byte]))]
    assert [(f.reply_name, body_of(f)["params"]) for f in got] == [("c", {"aor": "sip:a@b"})]


def test_brackets_and_quotes_inside_strings_do_not_end_the_request():
    framer = FifoFramer(1 << 16)
    tricky = {"aor": 'sip:a@b;x="}]"', "contact": "\\\"{", "registrar": "\u00e9:{"}
    [frame] = framer.feed(cli_request("r", "reg_list", tricky) + cli_request("s"))[:1]
    assert body_of(frame)["params"] == tricky


def test_an_empty_reply_name_asks_for_no_reply():
    [frame] = FifoFramer(1 << 16).feed(cli_request(""))
    assert frame.reply_name is None
    assert body_of(frame)["method"] == "reg_list"


@pytest.mark.parametrize("name", ["../etc/x", "a.b", "a\\b", "x" * 300])
def test_a_forbidden_reply_name_is_refused_and_the_next_request_is_served(name):
    """Matched: OpenSIPS mi_fifo fifo_fnc.c ``get_reply_filename``: ``if (memchr(file,'.',len)
    || memchr(file,'/',len) || memchr(file,'\\\\', len)) { LM_ERR("forbidden filename: %s\\n",
    file); return 0; }`` — the reply FIFO must stay inside reply_dir."""
    framer = FifoFramer(1 << 16)
    frames = framer.feed(f":{name}:".encode() + b'{"jsonrpc": "2.0"}' + cli_request("ok"))
    assert isinstance(frames[0], BadRequest) and frames[0].reply_name is None
    assert frames[-1].reply_name == "ok" and body_of(frames[-1])["method"] == "reg_list"


def test_garbage_is_one_error_and_the_next_request_is_served():
    framer = FifoFramer(1 << 16)
    frames = framer.feed(b"hello there, no colon here\n") + framer.feed(b"still none\n" + cli_request("ok"))
    assert frames[0] == BadRequest(None, "a request starts with ':<reply FIFO name>:'")
    assert [f.reply_name for f in frames[1:]] == ["ok"]


def test_a_body_that_is_not_a_json_object_is_a_parse_error_for_its_client():
    framer = FifoFramer(1 << 16)
    frames = framer.feed(b":r1:reg_list\n\n" + cli_request("r2"))
    assert frames[0] == BadRequest("r1", "a JSON-RPC request is a JSON object")
    assert frames[1].reply_name == "r2"


def test_a_truncated_request_is_reported_when_the_writer_closes_and_the_fifo_goes_on():
    framer = FifoFramer(1 << 16)
    assert framer.feed(cli_request("cut")[:40]) == []
    [frame] = framer.end()
    assert frame == BadRequest("cut", "truncated request: the writer closed the FIFO mid-request")
    [frame] = framer.feed(cli_request("next"))
    assert frame.reply_name == "next"
    assert framer.feed(b":half-a-na") == []
    assert framer.end() == [BadRequest(None, "truncated request: the writer closed the FIFO mid-request")]


def test_an_oversized_request_is_dropped_as_it_comes_answered_once_and_the_next_is_served():
    framer = FifoFramer(1000)
    big = cli_request("big", "reg_upsert", {"aor": "x" * 5000})
    frames = []
    for at in range(0, len(big), 512):
        frames += framer.feed(big[at : at + 512])
        assert len(framer._buffer) <= 1000 + 512  # never kept whole
    assert frames == [BadRequest("big", "request larger than 1000 bytes", too_large=True)]
    [frame] = framer.feed(cli_request("small"))
    assert frame.reply_name == "small"


def test_a_writer_that_only_opens_and_closes_yields_nothing():
    """opensips-cli opens the FIFO for writing and closes it at once to check it can."""
    framer = FifoFramer(1 << 16)
    assert framer.feed(b"") == []
    assert framer.end() == []
    assert framer.feed(b"\n \n") == [] and framer.end() == []
