"""The real opensips-cli, as a subprocess, against the JSON-RPC resource."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from uacregistrant.mi.jsonrpc import Command, CommandTable, MIError, MIResource, StreamedList
from uacregistrant.mi.metrics import Metrics, MetricsResource
from uacregistrant.mi.site import build_root, make_site

TRIPLE = ("aor", "contact", "registrar")


def opensips_cli() -> str:
    path = shutil.which("opensips-cli")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("opensips-cli is not installed (pip install opensipscli)")
        pytest.skip("opensips-cli is not installed")
    return path


def make_table(seen: list[dict[str, Any]]) -> CommandTable:
    def reg_list(params: dict[str, Any]) -> object:
        seen.append(params)
        if params:
            return {"Registrant": {"AOR": params["aor"], "binding": params["contact"]}}
        return StreamedList("Records", ({"AOR": f"sip:user{i}@example.com"} for i in range(3)))

    def reg_enable(params: dict[str, Any]) -> object:
        seen.append(params)
        return "OK"

    def reg_disable(params: dict[str, Any]) -> object:
        raise MIError(404, "No such registrant", "sip:a@b")

    table = CommandTable()
    table.add(Command("reg_list", reg_list, ((), TRIPLE), aliases=("uac_registrant:list",)))
    table.add(Command("reg_enable", reg_enable, (TRIPLE,)))
    table.add(Command("reg_disable", reg_disable, (TRIPLE,)))
    return table


@pytest.fixture
def cli() -> str:
    return opensips_cli()


@pytest_twisted.async_yield_fixture
async def server():
    seen: list[dict[str, Any]] = []
    mi = MIResource(make_table(seen))
    port = reactor.listenTCP(0, make_site(build_root(mi, MetricsResource(Metrics()))), interface="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/mi", seen
    finally:
        await port.stopListening()


async def run_cli(cli: str, url: str, *args: str) -> tuple[str, str, int]:
    # The child runs while this reactor keeps serving its HTTP requests.
    out, err, rc = await getProcessOutputAndValue(
        cli,
        ("-o", "communication_type=http", "-o", f"url={url}", "-x", "mi", *args),
        env=dict(os.environ),
    )
    return out.decode(), err.decode(), rc


@pytest_twisted.ensureDeferred
async def test_no_params_streamed_list(cli, server):
    url, seen = server
    out, err, rc = await run_cli(cli, url, "reg_list")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {
        "Records": [{"AOR": f"sip:user{i}@example.com"} for i in range(3)]
    }
    assert seen == [{}]


@pytest_twisted.ensureDeferred
async def test_positional_triple(cli, server):
    url, seen = server
    out, err, rc = await run_cli(cli, url, "reg_list", "sip:a@b", "sip:a@127.0.0.1:5070", "sip:127.0.0.1")
    assert rc == 0, err
    assert json.loads(out) == {"Registrant": {"AOR": "sip:a@b", "binding": "sip:a@127.0.0.1:5070"}}
    assert seen == [{"aor": "sip:a@b", "contact": "sip:a@127.0.0.1:5070", "registrar": "sip:127.0.0.1"}]


@pytest_twisted.ensureDeferred
async def test_named_params_and_ok(cli, server):
    url, seen = server
    out, err, rc = await run_cli(
        cli, url, "reg_enable", "aor=sip:a@b", "contact=sip:a@127.0.0.1:5070", "registrar=sip:127.0.0.1"
    )
    assert rc == 0, err
    assert json.loads(out) == "OK"
    assert seen == [{"aor": "sip:a@b", "contact": "sip:a@127.0.0.1:5070", "registrar": "sip:127.0.0.1"}]


@pytest_twisted.ensureDeferred
async def test_mi_error_reaches_stderr_with_rc_255(cli, server):
    url, _ = server
    out, err, rc = await run_cli(cli, url, "reg_disable", "sip:a@b", "sip:c@d", "sip:r")
    assert rc == 255
    assert "404: No such registrant (sip:a@b)" in err


@pytest_twisted.ensureDeferred
async def test_bad_params_error(cli, server):
    url, seen = server
    out, err, rc = await run_cli(cli, url, "reg_enable", "sip:a@b")
    assert rc == 255
    assert "-32602: Invalid params (Too few or too many parameters)" in err
    assert seen == []


@pytest_twisted.ensureDeferred
async def test_which_and_alias(cli, server):
    url, _ = server
    out, err, rc = await run_cli(cli, url, "which")
    assert rc == 0, err
    assert json.loads(out) == ["reg_list", "uac_registrant:list", "reg_enable", "reg_disable", "which"]
    out, err, rc = await run_cli(cli, url, "uac_registrant:list")
    assert rc == 0, err
    assert len(json.loads(out)["Records"]) == 3


@pytest_twisted.ensureDeferred
async def test_unknown_command_is_refused(cli, server):
    url, _ = server
    out, err, rc = await run_cli(cli, url, "reg_nope")
    assert rc == 255
    assert "reg_nope" in err
