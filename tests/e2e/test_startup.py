"""What an operator sees when start-up cannot go on."""

import subprocess
import sys

from .service import ROOT


def twistd(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "uac-registrant", *args],
        cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )


def test_bad_option_is_one_clear_line_and_a_non_zero_exit(tmp_path):
    result = twistd("--timer-interval", "1", "--hash-size", "3", cwd=tmp_path)
    assert result.returncode != 0
    assert "bad parameter timer_interval" in result.stdout + result.stderr


def test_unknown_option_fails(tmp_path):
    result = twistd("--no-such-thing", "1", cwd=tmp_path)
    assert result.returncode != 0


def test_a_table_of_another_version_stops_start_up(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        db.executescript(
            "CREATE TABLE version (table_name CHAR(32), table_version INTEGER);"
            "INSERT INTO version VALUES ('registrant', 2);"
            "CREATE TABLE registrant (id INTEGER PRIMARY KEY, registrar TEXT, aor TEXT);"
        )
    result = twistd(
        "--db-url", f"sqlite:///{tmp_path / 'old.sqlite'}",
        "--listen", "udp:127.0.0.1:5999",
        "--mi-listen", "tcp:0:interface=127.0.0.1",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "cannot load the registrant table" in result.stdout


def test_registrant_tac_and_config_file_start_the_same_service(tmp_path, kamailio):
    """``twistd -ny registrant.tac`` reads registrant.toml; ``--config`` reads the same file."""
    import os
    import signal

    from tests.peers import free_port

    from .service import make_table, wait_until

    registrar = kamailio(users={"alice": "alice-pw"}, min_expires=10)
    sip_port, mi_port = free_port("udp"), free_port("tcp")
    make_table(
        tmp_path / "r.sqlite",
        [dict(registrar=registrar.uri, aor="sip:alice@example.test", username="alice",
              password="alice-pw", binding_URI=f"sip:alice@127.0.0.1:{sip_port}", expiry=30)],
    )
    (tmp_path / "registrant.toml").write_text(
        f'db_url = "sqlite:///{tmp_path / "r.sqlite"}"\n'
        f'listen = ["udp:127.0.0.1:{sip_port}"]\n'
        f'mi_listen = "tcp:{mi_port}:interface=127.0.0.1"\n'
        "timer_interval = 2\n"
    )
    for command in (
        ["-ny", str(ROOT / "registrant.tac")],
        ["-n", "uac-registrant", "--config", "registrant.toml"],
    ):
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--pidfile=", *command],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(
                lambda: len(registrar.bindings("sip:alice@example.test")) == 1, 20, "alice bound"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(20)
        # Unregistered on shutdown, so the second start begins from scratch.
        assert registrar.bindings("sip:alice@example.test") == []


def test_the_service_answers_options_and_survives_garbage(tmp_path):
    """``twistd -n uac-registrant --listen udp:…`` answers OPTIONS with 200 after thousands of bad datagrams."""
    import os
    import random
    import socket

    from tests.peers import free_port

    from .service import ServiceProcess

    sip_port = free_port("udp")
    svc = ServiceProcess(
        tmp_path,
        ["--db-url", f"sqlite:///{tmp_path / 'r.sqlite'}", "--listen", f"udp:127.0.0.1:{sip_port}"],
        mi_port=free_port("tcp"),
    ).start()
    try:
        rng = random.Random(5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            valid = (
                "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{client.getsockname()[1]};branch=z9hG4bK{{}}\r\n"
                "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
                "Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            for i in range(5000):
                if i % 2:
                    junk = os.urandom(rng.randrange(1, 1400))
                else:  # damaged SIP: truncated or with bytes flipped
                    data = bytearray(valid.format(i).encode())
                    for _ in range(rng.randrange(1, 8)):
                        data[rng.randrange(len(data))] = rng.randrange(256)
                    junk = bytes(data[: rng.randrange(1, len(data))])
                client.sendto(junk, ("127.0.0.1", sip_port))
            # Whatever the garbage provoked (a few damaged OPTIONS may still parse), drain it.
            client.settimeout(0.5)
            try:
                while client.recv(65535):
                    pass
            except socket.timeout:
                pass
            client.settimeout(5)
            client.sendto(valid.format("final").encode(), ("127.0.0.1", sip_port))
            reply = client.recv(65535).decode()
        assert reply.startswith("SIP/2.0 200 ")
        assert "branch=z9hG4bKfinal" in reply
        metrics = svc.metrics_text()
        dropped = next(
            float(line.split()[-1]) for line in metrics.splitlines()
            if line.startswith("uac_registrant_malformed_datagrams_total")
        )
        assert dropped >= 2500
        assert svc.process.poll() is None
    finally:
        svc.stop()
