"""The real-peer harness itself: Kamailio answers as a registrar, PostgreSQL comes and goes.

SIP here is hand-built on a raw UDP socket with hashlib digests, so these tests
depend on nothing of the project's own SIP code.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg2
import pytest

from tests.peers import free_port
from tests.peers.kamailio import Kamailio, KamailioError
from tests.peers.postgres import Postgres

pytest_plugins = ["tests.peers.fixtures"]

AOR = "sip:alice@example.test"


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    headers: dict[str, str]  # lower-case name -> first value


class UAC:
    """A tiny blocking REGISTER client on one UDP socket, one Call-ID."""

    def __init__(self, registrar_port: int) -> None:
        self.registrar = ("127.0.0.1", registrar_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.local_port = self.sock.getsockname()[1]
        self.call_id = uuid.uuid4().hex + "@127.0.0.1"
        self.cseq = 0
        self.contact = "sip:alice@127.0.0.1:{}".format(self.local_port)

    def close(self) -> None:
        self.sock.close()

    def register(self, expires: int, authorization: str | None = None) -> Reply:
        self.cseq += 1
        extra = ["Contact: <{}>;expires={}".format(self.contact, expires), "User-Agent: harness-check"]
        if authorization is not None:
            extra.append("Authorization: " + authorization)
        return self._request("REGISTER", self.call_id, self.cseq, extra)

    def options(self) -> Reply:
        """An OPTIONS in its own dialog; returns the very next datagram received."""
        return self._request("OPTIONS", uuid.uuid4().hex, 1, [])

    def _request(self, method: str, call_id: str, cseq: int, extra: list[str]) -> Reply:
        lines = [
            "{} sip:127.0.0.1:{} SIP/2.0".format(method, self.registrar[1]),
            "Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK{};rport".format(self.local_port, uuid.uuid4().hex),
            "Max-Forwards: 70",
            "From: <{}>;tag={}".format(AOR, uuid.uuid4().hex[:10]),
            "To: <{}>".format(AOR),
            "Call-ID: " + call_id,
            "CSeq: {} {}".format(cseq, method),
        ]
        message = "\r\n".join(lines + extra + ["Content-Length: 0", "", ""]).encode()
        self.sock.sendto(message, self.registrar)
        reply = parse_reply(self.sock.recv(65535))
        assert reply.headers["call-id"] == call_id and reply.headers["cseq"] == "{} {}".format(cseq, method)
        return reply


def parse_reply(data: bytes) -> Reply:
    head = data.decode().split("\r\n\r\n", 1)[0].split("\r\n")
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return Reply(int(head[0].split()[1]), headers)


def digest_authorization(challenge: str, username: str, password: str, uri: str, method: str = "REGISTER") -> str:
    """An RFC 2617 MD5 answer to a WWW-Authenticate value, qop=auth when offered."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(None, 1)[1]))
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("{}:{}:{}".format(username, realm, password))
    ha2 = md5("{}:{}".format(method, uri))
    fields = 'username="{}", realm="{}", nonce="{}", uri="{}", algorithm=MD5'.format(username, realm, nonce, uri)
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        response = md5("{}:{}:{}:{}:auth:{}".format(ha1, nonce, nc, cnonce, ha2))
        fields += ', qop=auth, nc={}, cnonce="{}"'.format(nc, cnonce)
    else:
        response = md5("{}:{}:{}".format(ha1, nonce, ha2))
    if "opaque" in params:
        fields += ', opaque="{}"'.format(params["opaque"])
    return "Digest " + fields + ', response="{}"'.format(response)


@pytest.fixture
def uac(kamailio: Callable[..., Kamailio]) -> Iterator[tuple[Kamailio, UAC]]:
    registrar = kamailio(users={"alice": "s3cr3t"}, min_expires=60, max_expires=600)
    client = UAC(registrar.port)
    try:
        yield registrar, client
    finally:
        client.close()


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (Kamailio's children share the parent's)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/cmdline".format(entry), "rb") as cmdline:
                    if text.encode() in cmdline.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def authenticated_register(registrar: Kamailio, client: UAC, expires: int, password: str = "s3cr3t") -> Reply:
    challenge = client.register(expires)
    assert challenge.code == 401
    answer = digest_authorization(challenge.headers["www-authenticate"], "alice", password, registrar.uri)
    return client.register(expires, answer)


def test_register_is_challenged_then_bound(uac: tuple[Kamailio, UAC]) -> None:
    registrar, client = uac
    challenge = client.register(300)
    assert challenge.code == 401
    assert 'realm="example.test"' in challenge.headers["www-authenticate"]
    assert 'qop="auth"' in challenge.headers["www-authenticate"]
    assert registrar.bindings(AOR) == []

    answer = digest_authorization(challenge.headers["www-authenticate"], "alice", "s3cr3t", registrar.uri)
    ok = client.register(300, answer)

    assert ok.code == 200
    assert ok.headers["contact"] == "<{}>;expires=300".format(client.contact)
    [binding] = registrar.bindings(AOR)
    assert binding.contact == client.contact
    assert binding.call_id == client.call_id
    assert binding.cseq == 2
    assert 290 <= binding.expires <= 300
    assert binding.user_agent == "harness-check"
    assert binding.instance is None and binding.path is None
    assert registrar.all_bindings() == {"alice": [binding]}
    assert registrar.accepted_registrations == 1


def test_unregister_removes_the_binding(uac: tuple[Kamailio, UAC]) -> None:
    registrar, client = uac
    assert authenticated_register(registrar, client, 300).code == 200
    assert authenticated_register(registrar, client, 0).code == 200
    assert registrar.bindings(AOR) == []


def test_wrong_password_is_challenged_again_and_not_bound(uac: tuple[Kamailio, UAC]) -> None:
    registrar, client = uac
    reply = authenticated_register(registrar, client, 300, password="wrong")
    # Kamailio answers bad credentials with a fresh challenge, not 403.
    assert reply.code == 401
    assert "nonce=" in reply.headers["www-authenticate"]
    assert registrar.bindings(AOR) == []


def test_expiry_below_min_expires_gets_423_and_nothing_else(uac: tuple[Kamailio, UAC]) -> None:
    registrar, client = uac
    reply = authenticated_register(registrar, client, 30)
    assert reply.code == 423
    assert reply.headers["min-expires"] == "60"
    assert registrar.bindings(AOR) == []
    assert registrar.rejected_registrations == 1
    # A stray second reply (the 500 of sl_reply_error) would be queued before this one.
    assert client.options().code == 200


def test_expiry_above_max_expires_is_capped(uac: tuple[Kamailio, UAC]) -> None:
    registrar, client = uac
    reply = authenticated_register(registrar, client, 7200)
    assert reply.code == 200
    assert reply.headers["contact"].endswith(";expires=600")
    [binding] = registrar.bindings(AOR)
    assert 590 <= binding.expires <= 600


def test_without_challenge_register_binds_at_once(kamailio: Callable[..., Kamailio]) -> None:
    registrar = kamailio(challenge=False)
    client = UAC(registrar.port)
    try:
        assert client.register(120).code == 200
    finally:
        client.close()
    assert [binding.contact for binding in registrar.bindings(AOR)] == [client.contact]


def test_other_domain_is_refused(kamailio: Callable[..., Kamailio]) -> None:
    registrar = kamailio(challenge=False, realm="other.test")
    client = UAC(registrar.port)
    try:
        assert client.register(120).code == 403
    finally:
        client.close()
    assert registrar.all_bindings() == {}


def test_stop_leaves_no_process_and_is_idempotent(kamailio: Callable[..., Kamailio]) -> None:
    registrar = kamailio(users={"alice": "s3cr3t"})
    main_pid = registrar.pid
    assert main_pid in processes_mentioning(str(registrar.config_path))
    # -DD keeps the main process in the foreground and forks the SIP workers.
    assert len(processes_mentioning(str(registrar.config_path))) > 1
    registrar.stop()
    registrar.stop()
    assert processes_mentioning(str(registrar.config_path)) == []
    assert not registrar.running()
    assert "signal 15 received" in registrar.log_text()


def test_start_failure_raises_with_the_log(kamailio: Callable[..., Kamailio], tmp_path: pathlib.Path) -> None:
    kamailio(challenge=False)  # checks that Kamailio is installed at all
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        registrar = Kamailio(tmp_path / "clash", port=taken.getsockname()[1], users={})
        with pytest.raises(KamailioError, match="exited during start-up") as failure:
            registrar.start()
    assert "Address already in use" in str(failure.value)
    assert not registrar.running()


def test_tls_listener_answers_options(kamailio: Callable[..., Kamailio], tmp_path: pathlib.Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    registrar = kamailio(challenge=False, tls_port=free_port("tcp"), tls_cert=cert, tls_key=key)
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", registrar.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            call_id = uuid.uuid4().hex
            tls.sendall((
                "OPTIONS sip:127.0.0.1:{port};transport=tls SIP/2.0\r\n"
                "Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bK{call_id}\r\n"
                "Max-Forwards: 70\r\nFrom: <{aor}>;tag=1\r\nTo: <{aor}>\r\n"
                "Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).format(port=registrar.tls_port, local=tls.getsockname()[1], call_id=call_id, aor=AOR).encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = tls.recv(65535)
                assert chunk, "connection closed before a reply"
                reply += chunk
    assert parse_reply(reply).code == 200


def self_signed_certificate(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_free_port_is_free_for_udp_and_tcp() -> None:
    for kind in ("udp", "tcp"):
        port = free_port(kind)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind(("127.0.0.1", port))
            tcp.bind(("127.0.0.1", port))


def test_free_port_hands_out_no_port_twice_to_concurrent_runs() -> None:
    """Two processes at once (as two pytest-xdist workers, or two checkouts' runs) asking
    for ports while holding none of them bound: never the same port twice, and none in
    the kernel's ephemeral range, where a socket bound to port 0 or an outgoing
    connection could take it first."""
    code = "from tests.peers import free_port; print(' '.join(str(free_port()) for _ in range(300)))"
    root = pathlib.Path(__file__).resolve().parents[2]
    runs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    ports = [int(port) for run in runs for port in run.communicate(timeout=60)[0].split()]
    assert all(run.returncode == 0 for run in runs)
    assert len(ports) == 600 and len(set(ports)) == 600
    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert max(ports) < low


def test_database_survives_restart_and_backends_can_be_killed(postgres: Postgres, pg_dsn: str) -> None:
    dbname = pg_dsn.rsplit("/", 1)[1]
    assert pg_dsn == "postgres://postgres@127.0.0.1:{}/{}".format(postgres.port, dbname)
    first = psycopg2.connect(pg_dsn)
    try:
        with first.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
            cursor.execute("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7)")
        first.commit()
        old_pid = postgres.pid

        postgres.restart()

        assert postgres.pid != old_pid
        with pytest.raises(psycopg2.OperationalError):
            with first.cursor() as cursor:
                cursor.execute("SELECT 1")
    finally:
        first.close()

    second = psycopg2.connect(pg_dsn)
    try:
        with second.cursor() as cursor:
            cursor.execute("SELECT n FROM kept")
            assert cursor.fetchone() == (7,)
        second.rollback()
        assert postgres.kill_backends(dbname) == 1
        with pytest.raises(psycopg2.OperationalError):
            with second.cursor() as cursor:
                cursor.execute("SELECT 1")
    finally:
        second.close()
    assert postgres.kill_backends(dbname) == 0


def test_databases_are_created_and_dropped(postgres: Postgres) -> None:
    dsn = postgres.create_database("harness_check")
    try:
        psycopg2.connect(dsn).close()
    finally:
        postgres.drop_database("harness_check")
    with pytest.raises(psycopg2.OperationalError, match="does not exist"):
        psycopg2.connect(dsn)


def test_cluster_runs_as_an_unprivileged_user_and_stops_by_pid(postgres: Postgres) -> None:
    cluster = Postgres()
    try:
        cluster.start()
        pid = cluster.pid
        assert pid is not None
        assert os.stat("/proc/{}".format(pid)).st_uid != 0
        assert psycopg2.connect(cluster.dsn()).server_version >= 130000
    finally:
        cluster.destroy()
    assert not os.path.exists("/proc/{}".format(pid))
    assert not cluster.base.exists()


def test_stop_kills_a_hung_kamailio_with_its_children(
    kamailio: Callable[..., Kamailio], monkeypatch: pytest.MonkeyPatch
) -> None:
    registrar = kamailio(challenge=False)
    monkeypatch.setattr(registrar, "stop_timeout", 0.5)
    assert registrar.pid is not None
    os.kill(registrar.pid, signal.SIGSTOP)  # a main process that ignores SIGTERM
    registrar.stop()
    assert processes_mentioning(str(registrar.config_path)) == []
