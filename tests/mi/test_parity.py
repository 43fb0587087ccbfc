"""The MI commands against an engine on a fake transport: what OpenSIPS does, value by value.

Each test quotes the OpenSIPS source line it matches (modules/uac_registrant).
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.registrant.fakes import make_engine, record, reply
from uacregistrant.mi.commands import RegistrantCommands, record_view
from uacregistrant.mi.jsonrpc import MIError
from uacregistrant.mi.metrics import Metrics
from uacregistrant.registrant.states import State
from uacregistrant.store.memory import MemoryStore
from uacregistrant.store.rows import record_from_row

TI = 10


def validate(row):
    return record_from_row(row, timer_interval=TI, default_expires=3600)


class Lab:
    def __init__(self, *configs) -> None:
        self.engine, self.sender, self.clock = make_engine(timer_interval=TI)
        self.store = MemoryStore(configs)
        self.metrics = Metrics()
        self.commands = RegistrantCommands(self.engine, self.store, validate, self.metrics.row_skipped)
        self.engine.apply(configs)
        self.engine.start()

    def triple(self, config) -> dict[str, str]:
        return {"aor": config.aor, "contact": config.binding_uri, "registrar": config.registrar}

    def register(self, config, *headers: str) -> None:
        """Run the scheduler until the record's REGISTER is out, then answer 200."""
        self.clock.advance(TI)
        sent = self.sender.pop()
        reply(sent, 200, "OK", f"Contact: <{config.binding_uri}>;expires={config.expiry}", *headers)
        assert self.engine.get(config.key).state is State.REGISTERED_STATE

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
    assert record_view(Lab(same).engine.get(same.key))["third_party_registrant"] == same.aor
    other = record(third_party_registrant="sip:admin@example.test")
    assert record_view(Lab(other).engine.get(other.key))["third_party_registrant"] == "sip:admin@example.test"
    unset = record(third_party_registrant=None)
    assert "third_party_registrant" not in record_view(Lab(unset).engine.get(unset.key))


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
