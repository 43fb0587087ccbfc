"""MI end to end: the real service (twistd, SQLite) steered over HTTP and by opensips-cli,
with Kamailio as the registrar, events to a loopback receiver, metrics and no secrets."""

from __future__ import annotations

import http.client
import json
import shutil
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.peers import free_port, unavailable

from .receiver import EventReceiver
from .service import OPENSIPS_SQLITE, ServiceProcess, make_table, wait_until

TI = 2  # timer_interval: with 2 buckets, one visit a second
REALM = "example.test"

# The fixed keys of a reg_list entry, then the optional ones in this order.
FIXED_KEYS = [
    "AOR", "expires", "state", "enabled", "last_register_sent", "registration_t_out", "registrar", "binding",
]
OPTIONAL_KEYS = [
    "binding_params", "third_party_registrant", "socket", "proxy", "dst_IP", "ip", "shtag", "cluster_id",
]

# Distinctive credentials: none of them may show up anywhere the service writes or answers.
USERS = {
    "alice": ("zq7-login-alice-k31", "zq7-secret-alice-p94"),
    "bob": ("zq7-login-bob-k32", "zq7-secret-bob-p95"),
    "carol": ("zq7-login-carol-k33", "zq7-secret-carol-p96"),
    "dave": ("zq7-login-dave-k34", "zq7-secret-dave-p97"),
}


def opensips_cli() -> str:
    path = shutil.which("opensips-cli")
    if path is None:
        unavailable("opensips-cli is not installed (pip install opensipscli)")
    return path


class TokenServiceProcess(ServiceProcess):
    """A service whose MI needs ``Authorization: Bearer <token>``."""

    def __init__(self, workdir: Path, args: list[str], mi_port: int, token: str) -> None:
        super().__init__(workdir, args, mi_port)
        self.token = token

    def mi(self, method: str, params: object = None) -> dict:
        return mi_call(self.mi_port, method, params, {"Authorization": f"Bearer {self.token}"})


def mi_call(port: int, method: str, params: object = None, headers: dict[str, str] | None = None) -> dict:
    body = {"jsonrpc": "2.0", "id": "1", "method": method, "params": params or {}}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/mi", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


class Lab:
    """One Kamailio registrar, one SQLite table and the service run against them."""

    def __init__(self, workdir: Path, registrar) -> None:
        self.workdir = workdir
        self.registrar = registrar
        self.sip_port = free_port("udp")
        self.db = workdir / "registrant.sqlite"
        self.proc: ServiceProcess | None = None

    def binding(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def aor(self, user: str) -> str:
        return f"sip:{user}@{REALM}"

    def row(self, user: str, **extra) -> dict:
        username, password = USERS.get(user, (None, None))
        values = dict(
            registrar=self.registrar.uri,
            aor=self.aor(user),
            username=username,
            password=password,
            binding_URI=self.binding(user),
            expiry=60,
        )
        values.update(extra)
        return values

    def triple(self, user: str) -> dict[str, str]:
        return {"aor": self.aor(user), "contact": self.binding(user), "registrar": self.registrar.uri}

    def args(self, *extra: str) -> list[str]:
        return [
            "--db-url", f"sqlite:///{self.db}",
            "--listen", f"udp:127.0.0.1:{self.sip_port}",
            "--timer-interval", str(TI),
            "--failure-retry-interval", "120",
            *extra,
        ]

    def start(self, rows, *extra: str, token: str | None = None) -> ServiceProcess:
        make_table(self.db, rows)
        if token is None:
            self.proc = ServiceProcess(self.workdir, self.args(*extra), mi_port=free_port("tcp"))
        else:
            self.proc = TokenServiceProcess(
                self.workdir, self.args("--mi-token", token, *extra), free_port("tcp"), token)
        return self.proc.start()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [opensips_cli(), "-o", "communication_type=http", "-o", f"url=http://127.0.0.1:{self.proc.mi_port}/mi",
             "-x", "mi", *args],
            capture_output=True, text=True, timeout=60, cwd=self.workdir, stdin=subprocess.DEVNULL,
        )

    def states(self) -> dict[str, str]:
        return {aor.split("@")[0][4:]: r["state"] for aor, r in self.proc.records().items()}

    def wait_states(self, wanted: dict[str, str], timeout: float = 20) -> None:
        wait_until(lambda: self.states() == wanted, timeout, f"states {wanted}")

    def bindings(self, user: str):
        return self.registrar.bindings(self.aor(user))

    def db_rows(self) -> dict[str, dict]:
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            rows = {r["aor"]: dict(r) for r in db.execute("SELECT * FROM registrant")}
        db.close()
        return rows

    def sql(self, statement: str, *params: object) -> None:
        with sqlite3.connect(self.db) as db:
            db.execute(statement, params)
        db.close()


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=dict(USERS.values()), realm=REALM, min_expires=10, max_expires=3600)


@pytest.fixture
def lab(tmp_path, registrar):
    lab = Lab(tmp_path, registrar)
    try:
        yield lab
    finally:
        if lab.proc is not None:
            lab.proc.stop()


@pytest.fixture
def receiver():
    receiver = EventReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def cli_json(result: subprocess.CompletedProcess) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def named(triple: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in triple.items()]


def assert_key_order(record: dict) -> None:
    keys = list(record)
    assert keys[: len(FIXED_KEYS)] == FIXED_KEYS
    present = [k for k in OPTIONAL_KEYS if k in keys]
    assert keys[len(FIXED_KEYS): len(FIXED_KEYS) + len(present)] == present, keys


# -- 1. opensips-cli ------------------------------------------------------------------------


def test_opensips_cli_lists_disables_enables_and_forces(lab):
    opensips_cli()
    bob_extra = dict(
        binding_params=";q=0.5",
        third_party_registrant="sip:operator@example.test",
        proxy=lab.registrar.uri,
    )
    lab.start([lab.row("alice"), lab.row("bob", **bob_extra)])
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "REGISTERED_STATE"})

    listed = cli_json(lab.cli("reg_list"))
    assert list(listed) == ["Records"]
    records = {r["AOR"]: r for r in listed["Records"]}
    assert set(records) == {lab.aor("alice"), lab.aor("bob")}
    for record in records.values():
        assert_key_order(record)
        assert (record["state"], record["enabled"], record["expires"]) == ("REGISTERED_STATE", "yes", 60)
        assert (record["dst_IP"], record["ip"]) == ("IPv4", "127.0.0.1")
    bob = records[lab.aor("bob")]
    assert (bob["binding"], bob["registrar"]) == (lab.binding("bob"), lab.registrar.uri)
    assert (bob["binding_params"], bob["third_party_registrant"], bob["proxy"]) == (
        ";q=0.5", "sip:operator@example.test", lab.registrar.uri)

    alice = lab.triple("alice")
    one = cli_json(lab.cli("reg_list", *alice.values()))
    assert list(one) == ["Registrant"]
    assert one["Registrant"]["AOR"] == alice["aor"]
    assert one["Registrant"]["state"] == "REGISTERED_STATE"
    assert_key_order(one["Registrant"])

    unknown = lab.cli("reg_list", "sip:nobody@example.test", alice["contact"], alice["registrar"])
    assert unknown.returncode == 255
    assert "No such registrant" in unknown.stderr

    [bound] = lab.bindings("alice")
    assert cli_json(lab.cli("reg_disable", *named(alice))) == "OK"
    assert lab.db_rows()[alice["aor"]]["state"] == 1
    wait_until(lambda: lab.bindings("alice") == [], 10, "alice's binding to be removed")
    lab.wait_states({"alice": "NOT_REGISTERED_STATE", "bob": "REGISTERED_STATE"})
    assert lab.proc.records()[alice["aor"]]["enabled"] == "no"

    assert cli_json(lab.cli("reg_enable", *named(alice))) == "OK"
    assert lab.db_rows()[alice["aor"]]["state"] == 0
    [again] = wait_until(lambda: lab.bindings("alice"), 10, "alice's binding to come back")
    assert again.call_id != bound.call_id
    assert lab.proc.records()[alice["aor"]]["enabled"] == "yes"

    before = again.cseq
    assert cli_json(lab.cli("reg_force_register", *named(alice))) == "OK"
    wait_until(
        lambda: [b for b in lab.bindings("alice") if b.cseq > before], 10, "a forced refresh of alice",
    )
    [refreshed] = lab.bindings("alice")
    assert refreshed.call_id == again.call_id
    assert lab.bindings("bob")[0].contact.startswith(lab.binding("bob"))


# -- 2. reg_reload --------------------------------------------------------------------------


def test_reload_applies_the_table_as_a_diff(lab):
    # dave: unchanged; alice: expiry changed; bob: deleted; carol: inserted.
    lab.start([lab.row("dave"), lab.row("alice", expiry=12), lab.row("bob")])
    lab.wait_states({"dave": "REGISTERED_STATE", "alice": "REGISTERED_STATE", "bob": "REGISTERED_STATE"})
    [kept] = lab.bindings("dave")
    assert lab.bindings("bob")

    lab.sql("UPDATE registrant SET expiry = 30 WHERE aor = ?", lab.aor("alice"))
    lab.sql("DELETE FROM registrant WHERE aor = ?", lab.aor("bob"))
    carol = lab.row("carol")
    lab.sql(
        f"INSERT INTO registrant ({', '.join(carol)}) VALUES ({', '.join('?' * len(carol))})", *carol.values())
    assert lab.proc.mi("reg_reload") == {"jsonrpc": "2.0", "result": "OK", "id": "1"}

    wait_until(lambda: lab.bindings("bob") == [], 10, "bob's binding to be removed")
    wait_until(lambda: lab.bindings("carol"), 10, "carol to be bound")
    lab.wait_states({"dave": "REGISTERED_STATE", "alice": "REGISTERED_STATE", "carol": "REGISTERED_STATE"})
    # reg_list shows the table's new expiry at once, as OpenSIPS does; alice's
    # refresh, due within 12 s, asks it.
    assert lab.proc.records()[lab.aor("alice")]["expires"] == 30
    wait_until(lambda: 12 < lab.bindings("alice")[0].expires <= 30, 20, "alice's refresh asking 30 s")
    [still] = lab.bindings("dave")
    assert still.call_id == kept.call_id

    # Single-record reload: only that row is read again.
    lab.sql("UPDATE registrant SET expiry = 25 WHERE aor = ?", lab.aor("dave"))
    lab.sql("UPDATE registrant SET expiry = 15 WHERE aor = ?", lab.aor("carol"))
    assert lab.proc.mi("reg_reload", lab.triple("dave"))["result"] == "OK"
    for user in ("dave", "carol"):
        before = lab.bindings(user)[0].cseq
        assert lab.proc.mi("reg_force_register", lab.triple(user))["result"] == "OK"
        wait_until(lambda: lab.bindings(user)[0].cseq > before, 10, f"a forced refresh of {user}")
    wait_until(lambda: lab.proc.records()[lab.aor("dave")]["expires"] == 25, 10, "dave asking 25 s")
    assert lab.proc.records()[lab.aor("carol")]["expires"] == 60
    assert lab.bindings("dave")[0].call_id == kept.call_id

    missing = lab.proc.mi("reg_reload", lab.triple("bob"))
    assert missing["error"]["code"] == 404


# -- 3. reg_upsert / reg_delete ---------------------------------------------------------------


def test_upsert_registers_and_delete_unregisters(lab):
    opensips_cli()
    lab.start([lab.row("alice")])
    lab.wait_states({"alice": "REGISTERED_STATE"})

    username, password = USERS["bob"]
    bob = lab.triple("bob")
    upserted = lab.cli("reg_upsert", *named(bob), f"username={username}", f"password={password}", "expiry=40")
    assert cli_json(upserted) == "OK"
    row = lab.db_rows()[bob["aor"]]
    assert (row["registrar"], row["binding_URI"], row["username"], row["password"], row["expiry"], row["state"]) == (
        bob["registrar"], bob["contact"], username, password, 40, 0)
    [binding] = wait_until(lambda: lab.bindings("bob"), 10, "bob to be bound")
    assert binding.contact.startswith(bob["contact"])
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "REGISTERED_STATE"})
    assert lab.proc.records()[bob["aor"]]["expires"] == 40

    assert cli_json(lab.cli("reg_delete", *named(bob))) == "OK"
    wait_until(lambda: lab.bindings("bob") == [], 10, "bob's binding to be removed")
    assert bob["aor"] not in lab.db_rows()
    wait_until(lambda: bob["aor"] not in lab.proc.records(), 10, "bob to leave reg_list")
    assert lab.bindings("alice")

    rows_before = lab.db_rows()
    bad = lab.proc.mi("reg_upsert", {**lab.triple("dave"), "registrar": "not a uri", "expiry": "60"})
    assert bad["error"]["code"] == -32602
    assert lab.db_rows() == rows_before
    assert lab.proc.mi("reg_list", {**lab.triple("dave"), "registrar": "not a uri"})["error"]["code"] == 404


# -- 4. events --------------------------------------------------------------------------------


def test_state_changes_reach_the_event_url_in_order(lab, receiver):
    lab.start([lab.row("alice")], "--event-url", receiver.url)
    lab.wait_states({"alice": "REGISTERED_STATE"})
    started = time.time()
    assert lab.proc.mi("reg_disable", lab.triple("alice"))["result"] == "OK"

    def delivered() -> list[dict]:
        events = receiver.events()
        return events if events and events[-1]["new_state"] == "NOT_REGISTERED_STATE" else []

    events = wait_until(delivered, 15, "the NOT_REGISTERED event")
    for event in events:
        assert list(event) == ["aor", "contact", "registrar", "old_state", "new_state", "code", "reason", "time"]
        assert (event["aor"], event["contact"], event["registrar"]) == tuple(lab.triple("alice").values())
        assert abs(event["time"] - started) < 120
    # A chain: each event starts where the one before ended.
    assert events[0]["old_state"] == "NOT_REGISTERED_STATE"
    for before, after in zip(events, events[1:]):
        assert after["old_state"] == before["new_state"]
        assert after["time"] >= before["time"]
    path = [e["new_state"] for e in events]
    registered = path.index("REGISTERED_STATE")
    assert path[0] == "REGISTERING_STATE"
    assert events[0]["code"] is None  # caused by sending, not by a reply
    assert set(path[1:registered]) <= {"AUTHENTICATING_STATE"}
    assert (events[registered]["code"], events[registered]["reason"]) == (200, "OK")
    unregistering = path.index("UNREGISTERING_STATE")
    assert (events[unregistering]["code"], events[unregistering]["reason"]) == (None, None)
    assert set(path[registered:unregistering]) <= {"REGISTERED_STATE", "REGISTERING_STATE", "AUTHENTICATING_STATE"}
    assert set(path[unregistering + 1:-1]) <= {"AUTHENTICATING_UNREGISTER_STATE"}
    assert (events[-1]["code"], path[-1]) == (200, "NOT_REGISTERED_STATE")


# -- 5. metrics -------------------------------------------------------------------------------


def samples(port: int) -> dict[tuple[str, frozenset], float]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_records_requests_replies_mi_calls_and_skipped_rows(lab):
    bad = lab.row("carol", registrar="sip:someone@127.0.0.1")  # a user part: skipped
    lab.start([lab.row("alice"), lab.row("bob"), bad])
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "REGISTERED_STATE"})
    assert lab.proc.mi("reg_disable", lab.triple("bob"))["result"] == "OK"
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "NOT_REGISTERED_STATE"})

    metrics = samples(lab.proc.mi_port)
    bound = sum(len(b) for b in lab.registrar.all_bindings().values())
    assert bound == 1
    assert metrics[("uac_registrant_records", frozenset({("state", "REGISTERED_STATE")}))] == bound
    assert metrics[("uac_registrant_records", frozenset({("state", "NOT_REGISTERED_STATE")}))] == 1
    sent = sum(v for (name, _), v in metrics.items() if name == "uac_registrant_register_sent_total")
    assert sent > 0
    ok = sum(v for (name, labels), v in metrics.items()
             if name == "uac_registrant_replies_total" and ("code", "200") in labels)
    assert ok >= 3  # two REGISTERs and one unREGISTER
    mi_disable = ("uac_registrant_mi_calls_total", frozenset({("method", "reg_disable"), ("result", "ok")}))
    assert metrics[mi_disable] == 1
    assert metrics[("uac_registrant_rows_skipped_total", frozenset())] == 1


# -- 6. no secrets ----------------------------------------------------------------------------


def test_no_username_or_password_anywhere(lab, receiver):
    opensips_cli()
    secrets = [s for pair in USERS.values() for s in pair]
    rows = [
        lab.row("alice"),
        lab.row("bob"),
        lab.row("carol", password="zq7-secret-carol-wrong"),  # 401 twice: WRONG_CREDENTIALS
        lab.row("dave", registrar="sip:dave@127.0.0.1"),  # skipped at load
    ]
    secrets.append("zq7-secret-carol-wrong")
    lab.start(rows, "--event-url", receiver.url)
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "REGISTERED_STATE", "carol": "WRONG_CREDENTIALS_STATE"})
    port = lab.proc.mi_port

    seen: dict[str, str] = {}
    seen["reg_list"] = json.dumps(lab.proc.mi("reg_list"))
    seen["cli reg_list"] = lab.cli("reg_list").stdout
    for user in ("alice", "carol"):
        seen[f"reg_list {user}"] = json.dumps(lab.proc.mi("reg_list", lab.triple(user)))
        seen[f"cli reg_list {user}"] = lab.cli("reg_list", *lab.triple(user).values()).stdout
    assert lab.proc.mi("reg_disable", lab.triple("bob"))["result"] == "OK"
    wait_until(lambda: lab.bindings("bob") == [], 10, "bob's binding to be removed")
    # MI errors that carry a credential in the request.
    seen["upsert bad uri"] = json.dumps(lab.proc.mi("reg_upsert", {
        **lab.triple("erin"), "registrar": "sip:erin@127.0.0.1",
        "username": "zq7-login-erin-k35", "password": "zq7-secret-erin-p98"}))
    seen["upsert bad expiry"] = json.dumps(lab.proc.mi("reg_upsert", {
        **lab.triple("erin"), "username": "zq7-login-erin-k35", "password": "zq7-secret-erin-p98",
        "expiry": "zq7-secret-erin-p98"}))
    failed_cli = lab.cli("reg_upsert", *named(lab.triple("erin")), "username=zq7-login-erin-k35",
                         "password=zq7-secret-erin-p98", "expiry=1")
    seen["cli upsert too short"] = failed_cli.stdout + failed_cli.stderr
    seen["upsert ok reply"] = json.dumps(lab.proc.mi("reg_upsert", {
        **lab.triple("frank"), "username": "zq7-login-frank-k36", "password": "zq7-secret-frank-p99"}))
    secrets += ["zq7-login-erin-k35", "zq7-login-frank-k36", "zq7-secret-frank-p99"]
    seen["reg_list after upsert"] = json.dumps(lab.proc.mi("reg_list"))
    seen["/metrics"] = http_get(port, "/metrics")[1]
    seen["GET /"] = http_get(port, "/")[1]
    assert "error" in json.loads(seen["upsert bad uri"]) and "error" in json.loads(seen["upsert bad expiry"])
    assert failed_cli.returncode == 255

    assert lab.proc.terminate() in (0, -15)
    seen["events"] = b"\n".join(receiver.bodies).decode()
    assert '"new_state":"WRONG_CREDENTIALS_STATE"' in seen["events"]
    seen["log"] = lab.proc.log_text()
    assert "skipped row 4:" in seen["log"]
    leaks = [(where, secret) for where, text in seen.items() for secret in secrets if secret in text]
    assert leaks == []


# -- 7. mi_token ------------------------------------------------------------------------------


def test_mi_token_refuses_opensips_cli_and_accepts_bearer(lab):
    opensips_cli()
    token = "zq7-token-4e1f9a"
    lab.start([lab.row("alice")], token=token)
    lab.wait_states({"alice": "REGISTERED_STATE"})
    port = lab.proc.mi_port

    refused = lab.cli("reg_list")
    assert refused.returncode != 0
    assert "Records" not in refused.stdout
    assert "HTTP Error 401: Unauthorized" in refused.stderr
    with pytest.raises(urllib.error.HTTPError) as no_token:
        mi_call(port, "which")
    assert no_token.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as wrong:
        mi_call(port, "reg_list", headers={"Authorization": "Bearer zq7-token-4e1f9b"})
    assert wrong.value.code == 401

    listed = mi_call(port, "reg_list", headers={"Authorization": f"Bearer {token}"})
    assert [r["AOR"] for r in listed["result"]["Records"]] == [lab.aor("alice")]
    assert lab.proc.mi("reg_disable", lab.triple("alice"))["result"] == "OK"
    wait_until(lambda: lab.bindings("alice") == [], 10, "alice's binding to be removed")

    lab.proc.terminate()
    log = lab.proc.log_text()
    assert "MI over HTTP on" in log
    assert token not in log


# -- 8. reg_list on 100,000 records -------------------------------------------------------------


BIG = 100_000


def disabled_rows(registrar: str, sip_port: int):
    for i in range(BIG):
        yield (registrar, f"sip:u{i}@example.test", f"sip:u{i}@127.0.0.1:{sip_port}", 3600, 1)


def test_reg_list_streams_100000_records_while_mi_still_answers(tmp_path):
    sip_port = free_port("udp")
    db = tmp_path / "registrant.sqlite"
    registrar = f"sip:127.0.0.1:{free_port('udp')}"  # nothing is sent: every row is disabled
    with sqlite3.connect(db) as conn:
        conn.executescript(OPENSIPS_SQLITE)
        conn.executemany(
            "INSERT INTO registrant (registrar, aor, binding_URI, expiry, state) VALUES (?, ?, ?, ?, ?)",
            disabled_rows(registrar, sip_port),
        )
    conn.close()
    proc = ServiceProcess(
        tmp_path,
        ["--db-url", f"sqlite:///{db}", "--listen", f"udp:127.0.0.1:{sip_port}", "--timer-interval", str(TI)],
        mi_port=free_port("tcp"),
    )
    try:
        proc.start()
        wait_until(lambda: f"loaded {BIG} registrant records" in proc.log_text(), 120, "the table to load")

        streaming = threading.Event()
        progress = {"bytes": 0}
        outcome: dict[str, object] = {}

        def big_list() -> None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", proc.mi_port, timeout=300)
                body = json.dumps({"jsonrpc": "2.0", "id": "big", "method": "reg_list", "params": {}})
                started = time.monotonic()
                connection.request("POST", "/mi", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                chunks = []
                while chunk := response.read1(65536):
                    chunks.append(chunk)
                    progress["bytes"] += len(chunk)
                    streaming.set()
                outcome["seconds"] = time.monotonic() - started
                outcome["body"] = b"".join(chunks)
                connection.close()
            except BaseException as error:  # reported by the main thread
                outcome["error"] = error
            finally:
                outcome["finished_at"] = time.monotonic()
                streaming.set()

        lister = threading.Thread(target=big_list, name="big-reg-list")
        lister.start()
        try:
            assert streaming.wait(120), "reg_list sent nothing"
            which = mi_call(proc.mi_port, "which")
            which_at, bytes_then = time.monotonic(), progress["bytes"]
        finally:
            lister.join(300)
        assert not lister.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert "reg_list" in which["result"]

        reply = json.loads(outcome["body"])
        records = reply["result"]["Records"]
        print(f"reg_list of {len(records)} records: {outcome['seconds']:.2f} s, {len(outcome['body'])} bytes")
        assert reply["id"] == "big"
        assert len(records) == BIG
        assert {r["AOR"] for r in records} == {f"sip:u{i}@example.test" for i in range(BIG)}
        assert all(r["enabled"] == "no" and r["state"] == "NOT_REGISTERED_STATE" for r in records)
        assert which_at < outcome["finished_at"]
        assert bytes_then < len(outcome["body"])
    finally:
        proc.stop()
