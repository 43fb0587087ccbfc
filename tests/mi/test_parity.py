"""The MI commands against an engine on a fake transport: what OpenSIPS does, value by value.

Each test quotes the OpenSIPS source line it matches (modules/uac_registrant).
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted

from tests.registrant.fakes import CHALLENGE, make_engine, record, reply, timeout
from uacregistrant.mi.commands import RegistrantCommands
from uacregistrant.mi.jsonrpc import MIError
from uacregistrant.mi.metrics import Metrics
from uacregistrant.registrant.states import State
from uacregistrant.store.memory import MemoryStore
from uacregistrant.store.rows import record_from_row

TI = 10


def validate(row):
    return record_from_row(row, timer_interval=TI, default_expires=3600)


class Lab:
    def __init__(self, *configs, **timing) -> None:
        self.engine, self.sender, self.clock = make_engine(timer_interval=TI, **timing)
        self.clock.advance(1_800_000_000)  # a plausible now, in 2027
        self.store = MemoryStore(configs)
        self.metrics = Metrics()
        self.commands = RegistrantCommands(self.engine, self.store, validate, self.metrics.row_skipped)
        self.engine.apply(configs)
        self.engine.start()

    def triple(self, config) -> dict[str, str]:
        return {"aor": config.aor, "contact": config.binding_uri, "registrar": config.registrar}

    def register(self, config, granted: int | None = None) -> None:
        """Run the scheduler until the record's REGISTER is out, then answer 200."""
        self.next_request()
        self.answer(200, f"Contact: <{config.binding_uri}>;expires={granted or config.expiry}")
        assert self.engine.get(config.key).state is State.REGISTERED_STATE

    def next_request(self):
        for _ in range(100):
            if self.sender.sent:
                return self.sender.sent[0]
            self.clock.advance(1)
        raise AssertionError("nothing was sent")

    def answer(self, status: int, *headers: str) -> None:
        reply(self.sender.pop(), status, "Reason", *headers)

    def view(self, config) -> dict:
        return self.commands.listing.view(self.engine.get(config.key))

    def skipped(self) -> float:
        return self.metrics.registry.get_sample_value("uac_registrant_rows_skipped_total") or 0.0


def test_third_party_registrant_is_shown_whenever_the_column_is_set():
    """Matched: reg_records.c ``add_record``: ``if(uac->from_uri.s && uac->from_uri.len)
    { ... td->loc_uri.s = p; ...} else { td->loc_uri.s = td->rem_uri.s; ...}`` and
    registrant.c ``run_mi_reg_list``: ``if(rec->td.loc_uri.s != rec->td.rem_uri.s)
    add_mi_string(... "third_party_registrant" ...)`` — a pointer comparison, so a
    column equal to the AOR is shown too; an empty column is not."""
    same = record(third_party_registrant="sip:alice@example.test")
    assert same.third_party_registrant == same.aor
    assert Lab(same).view(same)["third_party_registrant"] == same.aor
    other = record(third_party_registrant="sip:admin@example.test")
    assert Lab(other).view(other)["third_party_registrant"] == "sip:admin@example.test"
    unset = record(third_party_registrant=None)
    assert "third_party_registrant" not in Lab(unset).view(unset)


@pytest_twisted.ensureDeferred
async def test_reg_enable_on_an_enabled_record_sends_nothing_and_force_register_does():
    """Matched: reference §4.4 (registrant.c, enable/disable): "Calling enable on an
    enabled record (or disable on a disabled one) is a silent no-op returning "OK"";
    the DB ``UPDATE ... SET state`` "happens only when the flag actually changes".
    ``reg_force_register`` is the command that sets ``registration_timeout = 0``."""
    config = record()
    lab = Lab(config)
    lab.register(config)
    registrant = lab.engine.get(config.key)
    timeout, cseq = registrant.registration_timeout, registrant.cseq
    lab.store.rows[config.key]["state"] = 0

    assert await lab.commands.reg_enable(lab.triple(config)) == "OK"
    lab.clock.advance(TI)
    assert lab.sender.sent == []
    assert (registrant.state, registrant.registration_timeout, registrant.cseq) == (
        State.REGISTERED_STATE, timeout, cseq)

    assert lab.commands.reg_force_register(lab.triple(config)) == "OK"
    lab.clock.advance(TI)
    [refresh] = lab.sender.sent
    assert refresh.cseq == cseq + 1


@pytest_twisted.ensureDeferred
async def test_reg_disable_on_a_disabled_record_changes_nothing():
    """Matched: reference §4.4 — disable on a disabled record is a silent no-op returning "OK"."""
    config = record(enabled=False)
    lab = Lab(config)
    lab.clock.advance(TI)
    registrant = lab.engine.get(config.key)
    lab.store.available = False  # a write would fail: none may be attempted
    assert await lab.commands.reg_disable(lab.triple(config)) == "OK"
    lab.clock.advance(TI)
    assert lab.sender.sent == []
    assert (registrant.state, registrant.enabled) == (State.NOT_REGISTERED_STATE, False)


@pytest_twisted.ensureDeferred
async def test_rows_skipped_by_reg_reload_are_counted():
    """Matched: reg_db_handler.c ``load_reg_info_from_db`` runs the same per-row checks for
    start-up and for ``mi_reg_reload`` (``load_reg_info_from_db(REG_DB_LOAD_RELOAD)``):
    a bad row is skipped either way, so the skipped-rows counter counts both."""
    good, bad = record(), record(aor="sip:bob@example.test", binding_uri="sip:bob@127.0.0.1:5071")
    lab = Lab(good, bad)
    assert lab.skipped() == 0
    lab.store.rows[bad.key]["registrar"] = "sip:someone@127.0.0.1"  # a user part: invalid
    assert await lab.commands.reg_reload({}) == "OK"
    assert lab.skipped() == 1
    assert lab.engine.get(bad.key) is None

    with pytest.raises(MIError) as error:
        await lab.commands.reg_reload(lab.triple(bad))
    assert (error.value.code, error.value.message) == (400, "Bad registrant row")
    assert lab.skipped() == 2


OPENSIPS_TIME_KEYS = ("last_register_sent", "registration_t_out")


def assert_ctime_text(view: dict) -> None:
    for key in OPENSIPS_TIME_KEYS:
        time.strptime(view[key], "%a %b %d %H:%M:%S %Y")  # raises on anything else ("never")


@pytest.mark.parametrize("percentage", [100, 80])
def test_registration_t_out_is_opensips_deadline_and_ours_is_next_attempt(percentage):
    """Matched: registrant.c ``run_reg_tm_cback``, 200 OK: ``rec->registration_timeout = now +
    rec->expires - timer_interval;`` — with reregister_expiry_percentage P (4.0) the share
    E·P/100 stands for E (reference §2).  Our own refresh time is under ``next_attempt``."""
    config = record(expiry=600)
    lab = Lab(config, reregister_expiry_percentage=percentage)
    assert lab.view(config)["registration_t_out"] == time.ctime(0)  # loaded: 0, as add_record leaves it
    lab.register(config, granted=300)
    granted_at = lab.clock.seconds()
    registrant = lab.engine.get(config.key)
    view = lab.view(config)
    assert view["registration_t_out"] == time.ctime(granted_at + 300 * percentage / 100 - TI)
    assert view["next_attempt"] == time.ctime(registrant.registration_timeout)
    assert registrant.registration_timeout != granted_at + 300 * percentage / 100 - TI
    # A refresh in flight leaves OpenSIPS's deadline as it was.
    lab.clock.advance(registrant.registration_timeout - lab.clock.seconds())
    lab.next_request()
    assert registrant.state is State.REGISTERING_STATE
    assert lab.view(config)["registration_t_out"] == view["registration_t_out"]


@pytest.mark.parametrize(("fri", "wait"), [(60, 60), (0, 600)])
def test_after_a_failure_registration_t_out_is_opensips_retry_time(fri, wait):
    """Matched: registrant.c ``run_reg_tm_cback``: ``case 408: ... rec->state =
    REGISTER_TIMEOUT_STATE; rec->registration_timeout = now + rec->expires - timer_interval;``
    and the same for a registrar error (``rec->state = REGISTRAR_ERROR_STATE;
    rec->registration_timeout = now + rec->expires - timer_interval;``); since 3.5
    failure_retry_interval, when set, replaces the expiry (reference §2, RETRY)."""
    config = record(expiry=600)
    lab = Lab(config, failure_retry_interval=fri)
    lab.next_request()
    lab.answer(503)
    failed_at = lab.clock.seconds()
    view = lab.view(config)
    assert view["state"] == "REGISTRAR_ERROR_STATE"
    assert view["registration_t_out"] == time.ctime(failed_at + wait - TI)
    assert_ctime_text(view)


def test_after_wrong_credentials_registration_t_out_is_reset_and_never_says_never():
    """Matched: registrant.c ``run_reg_tm_cback``, challenged again: ``rec->state =
    WRONG_CREDENTIALS_STATE; rec->registration_timeout = 0;`` — the epoch as ctime text.
    When we stop retrying (max_auth_failures) only our own ``next_attempt`` says "never"."""
    config = record(expiry=600)
    lab = Lab(config, max_auth_failures=1)
    lab.next_request()
    lab.answer(401, CHALLENGE)
    lab.answer(401, CHALLENGE)
    registrant = lab.engine.get(config.key)
    assert registrant.state is State.WRONG_CREDENTIALS_STATE
    view = lab.view(config)
    assert view["registration_t_out"] == time.ctime(0)
    assert view["next_attempt"] == "never"
    assert_ctime_text(view)


def test_dst_is_cleared_by_a_local_timeout_and_set_again_by_a_reply():
    """Matched: registrant.c ``run_reg_tm_cback``: ``if (ps->rpl==FAKED_REPLY)
    memset(&rec->td.forced_to_su, 0, sizeof(union sockaddr_union)); else if
    (rec->td.forced_to_su.s.sa_family == AF_UNSPEC) rec->td.forced_to_su =
    t->uac[0].request.dst.to;`` — TM's own 408 is a faked reply; reg_list prints
    ``dst_IP``/``ip`` only while ``forced_to_su`` is set."""
    config = record(expiry=600)
    lab = Lab(config, failure_retry_interval=20)
    lab.register(config)
    assert (lab.view(config)["dst_IP"], lab.view(config)["ip"]) == ("IPv4", "127.0.0.1")
    lab.engine.force_register(config.key)
    timeout(lab.sender.pop())
    view = lab.view(config)
    assert view["state"] == "REGISTER_TIMEOUT_STATE"
    assert "dst_IP" not in view and "ip" not in view
    lab.next_request()
    lab.answer(500)
    view = lab.view(config)
    assert view["state"] == "REGISTRAR_ERROR_STATE"
    assert (view["dst_IP"], view["ip"]) == ("IPv4", "127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_after_a_reload_that_changed_the_expiry_expires_is_the_table_value_until_a_200():
    """Matched: reg_records.c ``add_record``: ``record->expires = uac->expires;`` for the
    reloaded row, and ``match_reload_record`` inherits Call-ID, tag, CSeq,
    ``last_register_sent``, ``registration_timeout`` and the state — not ``expires``."""
    config = record(expiry=600)
    lab = Lab(config)
    lab.register(config, granted=300)
    assert lab.view(config)["expires"] == 300
    assert await lab.commands.reg_reload(lab.triple(config)) == "OK"  # nothing changed
    assert lab.view(config)["expires"] == 300
    lab.store.rows[config.key]["expiry"] = 900
    assert await lab.commands.reg_reload(lab.triple(config)) == "OK"
    view = lab.view(config)
    assert (view["expires"], view["state"]) == (900, "REGISTERED_STATE")
    assert lab.engine.get(config.key).expires == 300  # our refresh still counts on the grant
    lab.engine.force_register(config.key)
    lab.answer(200, f"Contact: <{config.binding_uri}>;expires=450")
    assert lab.view(config)["expires"] == 450

    lab.store.rows[config.key]["expiry"] = 1200
    assert await lab.commands.reg_reload({}) == "OK"  # a full reload too
    assert lab.view(config)["expires"] == 1200
