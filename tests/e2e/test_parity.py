"""OpenSIPS parity of the real service (twistd, SQLite, Kamailio as the registrar).

Each test quotes the OpenSIPS source line it matches (modules/uac_registrant).
"""

from __future__ import annotations

import time

from tests.e2e.test_mi import cli_json, lab, named, registrar  # noqa: F401  (fixtures)
from tests.e2e.service import wait_until


def test_a_tagged_row_without_clustering_is_loaded_listed_and_never_registered(lab):  # noqa: F811
    """Matched: clustering.c ``ureg_cluster_shtag_is_active``: ``if ( c_id<=0 ||
    tag_name->len==0 || (enable_clustering && c_api.shtag_get( tag_name, c_id)==
    SHTAG_STATE_ACTIVE) ) return 1; return 0;`` and registrant.c ``run_timer_check``:
    ``if (!ureg_cluster_shtag_is_active( &rec->cluster_shtag, rec->cluster_id)) return 0;``
    — with clustering off a record with a tag is never sent by the timer; it is still
    loaded and listed with ``shtag`` and ``cluster_id``."""
    lab.start([lab.row("alice"), lab.row("bob", cluster_shtag="vip/1")])
    wait_until(lambda: lab.bindings("alice"), 20, "alice to be bound")
    time.sleep(3)  # more than a whole sweep (timer_interval 2 s) after alice's REGISTER
    records = lab.proc.records()
    bob = records[lab.aor("bob")]
    assert (bob["state"], bob["shtag"], bob["cluster_id"]) == ("NOT_REGISTERED_STATE", "vip", 1)
    assert records[lab.aor("alice")]["state"] == "REGISTERED_STATE"
    assert lab.bindings("bob") == []
    assert "1 records have a cluster_shtag while enable_clustering is off" in lab.proc.log_text()


def test_reg_enable_on_an_enabled_record_sends_nothing(lab):  # noqa: F811
    """Matched: reference §4.4 — enable on an enabled record is a silent no-op returning
    "OK"; ``reg_force_register`` is the command that makes the record register again."""
    lab.start([lab.row("alice")])
    [bound] = wait_until(lambda: lab.bindings("alice"), 20, "alice to be bound")
    assert cli_json(lab.cli("reg_enable", *named(lab.triple("alice")))) == "OK"
    time.sleep(3)  # more than a whole sweep
    [still] = lab.bindings("alice")
    assert (still.call_id, still.cseq) == (bound.call_id, bound.cseq)
    assert cli_json(lab.cli("reg_force_register", *named(lab.triple("alice")))) == "OK"
    wait_until(lambda: lab.bindings("alice")[0].cseq > bound.cseq, 10, "a forced refresh of alice")


def epoch(text: str) -> float:
    return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))


def test_registration_t_out_is_opensips_deadline_on_the_real_service(lab):  # noqa: F811
    """Matched: registrant.c ``run_reg_tm_cback``, 200 OK: ``rec->registration_timeout = now +
    rec->expires - timer_interval;`` — 60 − 2 s after the REGISTER here, while our own
    refresh (``next_attempt``) comes a timer_interval earlier."""
    lab.start([lab.row("alice")])
    lab.wait_states({"alice": "REGISTERED_STATE"})
    alice = lab.proc.records()[lab.aor("alice")]
    sent = epoch(alice["last_register_sent"])
    assert abs(epoch(alice["registration_t_out"]) - (sent + 60 - 2)) <= 1
    assert abs(epoch(alice["next_attempt"]) - (sent + 60 - 2 * 2)) <= 1
