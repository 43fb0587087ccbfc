"""MI over a FIFO: the real opensips-cli (fifo transport) and raw clients against ``MIFifo``.

The behaviour matched is OpenSIPS's modules/mi_fifo (fifo_fnc.c, mi_fifo.c);
each test names the source line it follows.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import capturedLogs, formatEvent

from tests.mi.test_opensips_cli import make_table, opensips_cli
from uacregistrant.mi import fifo as fifo_module
from uacregistrant.mi.fifo import FifoError, MIFifo
from uacregistrant.mi.jsonrpc import Command, StreamedList


@pytest.fixture
def cli() -> str:
    return opensips_cli()


class Served:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "opensips_fifo"
        self.seen: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        table = make_table(self.seen)
        table.add(Command("big_list", lambda params: StreamedList(
            "Records", ({"AOR": f"sip:user{i}@example.com", "n": i} for i in range(int(params["count"])))
        ), (("count",),)))
        self.fifo = MIFifo(
            reactor, str(self.path), table, reply_dir=str(directory),
            on_call=lambda method, result: self.calls.append((method, result)),
        )

    async def cli(self, cli: str, *args: str) -> tuple[str, str, int]:
        # The child blocks on the FIFOs; this reactor keeps serving them meanwhile.
        out, err, rc = await getProcessOutputAndValue(
            cli,
            ("-o", "communication_type=fifo", "-o", f"fifo_file={self.path}",
             "-o", f"fifo_reply_dir={self.directory}", "-x", "mi", *args),
            env=dict(os.environ),
        )
        return out.decode(), err.decode(), rc

    def raw(self, request: bytes, reply_name: str | None = "raw_reply", read: bool = True) -> defer.Deferred:
        """A hand-made client, in a thread (its blocking opens must not stall the reactor)."""

        def client() -> str | None:
            reply = self.directory / reply_name if reply_name else None
            if reply is not None:
                os.mkfifo(reply, 0o600)
            try:
                with open(self.path, "wb") as fifo:
                    fifo.write(request)
                if reply is None or not read:
                    return None
                with open(reply, "rb") as answer:
                    return answer.read().decode()
            finally:
                if reply is not None:
                    reply.unlink()

        return threads.deferToThread(client)


@pytest.fixture
def served(tmp_path):
    served = Served(tmp_path)
    served.fifo.start()
    try:
        yield served
    finally:
        served.fifo.stop()


def frame(name: str, body: dict) -> bytes:
    return f":{name}:{json.dumps(body)}".encode()


# -- opensips-cli ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_opensips_cli_runs_commands_over_the_fifo(cli, served):
    """Matched: fifo_fnc.c ``mi_fifo_server``: ``/* commands must look this way
    ':[filename]:' */`` then ``parse_mi_request(p, &parse_end, &request)`` and the
    reply printed by ``print_mi_response_flush`` into the reply FIFO — the JSON-RPC
    request and reply of mi_http, framed by the reply FIFO name."""
    out, err, rc = await served.cli(cli, "reg_list")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"Records": [{"AOR": f"sip:user{i}@example.com"} for i in range(3)]}

    out, err, rc = await served.cli(cli, "reg_list", "sip:a@b", "sip:a@127.0.0.1:5070", "sip:127.0.0.1")
    assert rc == 0, err
    assert json.loads(out) == {"Registrant": {"AOR": "sip:a@b", "binding": "sip:a@127.0.0.1:5070"}}

    out, err, rc = await served.cli(cli, "reg_enable", "aor=sip:a@b", "contact=sip:c@d", "registrar=sip:r")
    assert (rc, json.loads(out)) == (0, "OK"), err
    assert served.seen[-1] == {"aor": "sip:a@b", "contact": "sip:c@d", "registrar": "sip:r"}

    out, err, rc = await served.cli(cli, "reg_disable", "sip:a@b", "sip:c@d", "sip:r")
    assert rc == 255 and "404: No such registrant (sip:a@b)" in err

    out, err, rc = await served.cli(cli, "reg_enable", "sip:a@b")
    assert rc == 255 and "-32602: Invalid params (Too few or too many parameters)" in err

    out, err, rc = await served.cli(cli, "uac_registrant:list")
    assert rc == 0 and len(json.loads(out)["Records"]) == 3

    out, err, rc = await served.cli(cli, "reg_nope")
    assert rc == 255 and "reg_nope" in err
    assert ("reg_list", "ok") in served.calls and ("reg_disable", "error") in served.calls


@pytest_twisted.ensureDeferred
async def test_concurrent_clients_each_get_their_own_reply(cli, served):
    """Matched: fifo_fnc.c — every request names its own reply FIFO
    (``get_reply_filename(file, file_sep - file)``), so clients never see each other's reply."""
    triples = [(f"sip:u{i}@b", f"sip:u{i}@127.0.0.1:{5000 + i}", "sip:127.0.0.1") for i in range(8)]
    results = await defer.gatherResults(
        [defer.ensureDeferred(served.cli(cli, "reg_list", *triple)) for triple in triples]
    )
    for (out, err, rc), (aor, contact, _) in zip(results, triples):
        assert rc == 0, err
        assert json.loads(out) == {"Registrant": {"AOR": aor, "binding": contact}}


@pytest_twisted.ensureDeferred
async def test_a_long_list_is_streamed_whole_while_other_clients_are_served(cli, served):
    big = served.raw(frame("big_reply", {"jsonrpc": "2.0", "id": "7", "method": "big_list",
                                         "params": {"count": "30000"}}), "big_reply")
    out, err, rc = await served.cli(cli, "reg_list", "sip:a@b", "sip:c@d", "sip:r")
    assert rc == 0, err
    reply = json.loads(await big)
    assert reply["id"] == "7"
    assert [r["n"] for r in reply["result"]["Records"]] == list(range(30000))


# -- start-up and the FIFO file ---------------------------------------------------------------


def test_the_fifo_is_made_with_its_mode_whatever_the_umask(tmp_path):
    """Matched: fifo_fnc.c ``mi_create_fifo``: ``mkfifo(mi_fifo_name, mi_fifo_mode)`` then
    ``chmod(mi_fifo_name, mi_fifo_mode)``; mi_fifo.c default ``S_IRUSR| S_IWUSR| S_IRGRP|
    S_IWGRP; /* rw-rw---- */``."""
    old = os.umask(0o077)
    try:
        for mode in (0o660, 0o600):
            fifo = MIFifo(reactor, str(tmp_path / "f"), make_table([]), reply_dir=str(tmp_path), mode=mode)
            fifo.start()
            try:
                found = os.stat(tmp_path / "f")
                assert stat.S_ISFIFO(found.st_mode) and stat.S_IMODE(found.st_mode) == mode
            finally:
                fifo.stop()
            assert not (tmp_path / "f").exists()  # removed at stop, as mi_destroy does
    finally:
        os.umask(old)


@pytest_twisted.ensureDeferred
async def test_a_stale_fifo_is_replaced_at_start_up(cli, tmp_path):
    """Matched: mi_fifo.c ``mi_mod_init``: ``n=stat(mi_fifo, &filestat); if (n==0){ /* FIFO
    exist, delete it (safer) */ if (unlink(mi_fifo)<0){ ...`` then the FIFO is made anew."""
    os.mkfifo(tmp_path / "opensips_fifo")
    os.chmod(tmp_path / "opensips_fifo", 0o604)  # (inode numbers may be reused: the mode tells)
    served = Served(tmp_path)
    with capturedLogs() as events:
        served.fifo.start()
    try:
        assert stat.S_IMODE(os.stat(served.path).st_mode) == 0o660
        assert [formatEvent(e) for e in events] == [f"removing the stale FIFO {served.path}"]
        out, err, rc = await served.cli(cli, "reg_list")
        assert rc == 0, err
    finally:
        served.fifo.stop()


def test_a_file_that_is_not_a_fifo_is_left_alone_and_start_up_fails(tmp_path):
    """OpenSIPS unlinks whatever is at the path; a regular file is refused here instead."""
    path = tmp_path / "opensips_fifo"
    path.write_text("precious")
    fifo = MIFifo(reactor, str(path), make_table([]), reply_dir=str(tmp_path))
    with pytest.raises(FifoError, match="exists and is not a FIFO"):
        fifo.start()
    assert path.read_text() == "precious"
    with pytest.raises(FifoError, match="reply directory .* is not a directory"):
        MIFifo(reactor, str(tmp_path / "x"), make_table([]), reply_dir=str(tmp_path / "nope")).start()


@pytest_twisted.ensureDeferred
async def test_a_removed_fifo_is_made_again(cli, served):
    """Matched: the mi_fifo README: "The module checks every 30 seconds if the FIFO file
    exists, and if it was deleted, it recreates it" (fifo_fnc.c ``get_fifo_stream``)."""
    os.unlink(served.path)
    served.fifo._check_file()  # what the 30 s check runs
    assert stat.S_ISFIFO(os.stat(served.path).st_mode)
    out, err, rc = await served.cli(cli, "reg_list")
    assert rc == 0, err


# -- bad requests ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_malformed_request_gets_a_parse_error_and_the_fifo_keeps_serving(cli, served):
    reply = await served.raw(b':raw_reply:{"jsonrpc": "2.0", "id": "5", "method": reg_list}')
    assert json.loads(reply) == {
        "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None,
    }
    reply = await served.raw(b":raw_reply:reg_list\n\n")
    assert json.loads(reply)["error"] == {
        "code": -32700, "message": "Parse error", "data": "a JSON-RPC request is a JSON object",
    }
    out, err, rc = await served.cli(cli, "reg_list")
    assert rc == 0, err
    assert served.calls.count(("<invalid>", "error")) == 2


@pytest_twisted.ensureDeferred
async def test_a_truncated_request_gets_an_error_and_the_fifo_keeps_serving(cli, served):
    whole = frame("raw_reply", {"jsonrpc": "2.0", "id": "9", "method": "reg_list", "params": {}})
    reply = await served.raw(whole[:30])
    assert json.loads(reply)["error"] == {
        "code": -32700, "message": "Parse error",
        "data": "truncated request: the writer closed the FIFO mid-request",
    }
    out, err, rc = await served.cli(cli, "reg_list")
    assert rc == 0, err


@pytest_twisted.ensureDeferred
async def test_an_oversized_request_is_refused_and_the_fifo_keeps_serving(cli, served):
    served.fifo.max_request = 4096
    served.fifo.stop()
    served.fifo.start()
    big = frame("raw_reply", {"jsonrpc": "2.0", "id": "1", "method": "reg_list", "params": ["x" * 100_000]})
    reply = json.loads(await served.raw(big))
    assert reply["error"] == {"code": -32600, "message": "Invalid Request", "data": "request larger than 4096 bytes"}
    out, err, rc = await served.cli(cli, "reg_list")
    assert rc == 0, err


@pytest_twisted.ensureDeferred
async def test_a_reply_name_leaving_the_reply_dir_is_refused(cli, served, tmp_path):
    """Matched: fifo_fnc.c ``get_reply_filename``: ``if (memchr(file,'.',len) ||
    memchr(file,'/',len) || memchr(file,'\\\\', len)) { LM_ERR("forbidden filename: ...``."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "victim")
    await served.raw(frame("../outside/victim", {"jsonrpc": "2.0", "id": "1", "method": "reg_list"}), None)
    out, err, rc = await served.cli(cli, "reg_list")
    assert rc == 0, err
    assert ("<invalid>", "error") in served.calls


@pytest_twisted.ensureDeferred
async def test_a_client_that_never_reads_its_reply_is_given_up(cli, served, monkeypatch):
    """Matched: fifo_fnc.c ``mi_open_reply_pipe``: ``/* open non-blocking to make sure that a
    broken client will not block the FIFO server forever */`` and, on ENXIO, ``/* give up on
    the client - we can't afford server blocking */`` after FIFO_REPLY_RETRIES."""
    monkeypatch.setattr(fifo_module, "REPLY_WAIT", 0.3)
    await served.raw(frame("raw_reply", {"jsonrpc": "2.0", "id": "1", "method": "reg_list"}), read=False)
    out, err, rc = await served.cli(cli, "reg_list")
    assert rc == 0, err


@pytest_twisted.ensureDeferred
async def test_no_reply_name_runs_the_command_and_answers_nobody(served):
    """Matched: fifo_fnc.c ``if (file_sep==file) { file = NULL; /* no reply expected */``."""
    await served.raw(frame("", {"jsonrpc": "2.0", "id": "1", "method": "reg_enable",
                                "params": ["sip:a@b", "sip:c@d", "sip:r"]}), None)
    await served.raw(frame("raw_reply", {"jsonrpc": "2.0", "id": "2", "method": "which"}))
    assert served.seen == [{"aor": "sip:a@b", "contact": "sip:c@d", "registrar": "sip:r"}]
