"""MI reg_trace and the diagnostics keys of reg_list, against an engine on a fake transport."""

from __future__ import annotations

import json

import pytest

from tests.registrant.fakes import CHALLENGE, make_engine, record, reply
from uacregistrant.mi.commands import RegistrantCommands
from uacregistrant.mi.jsonrpc import MIError, _dumps, bind_params
from uacregistrant.mi.metrics import Metrics
from uacregistrant.registrant.states import State
from uacregistrant.registrant.trace import MAX_TRACED
from uacregistrant.store.memory import MemoryStore
from uacregistrant.store.rows import record_from_row

TI = 10
NOW = 1_800_000_000
CONFIG = record(
    aor="sip:trunk@example.test",
    registrar="sip:127.0.0.1:5090",
    username="acct-4711",
    password="s3cret-pass",
)
EXCHANGE_KEYS = ["at", "transport", "destination", "request", "reply", "outcome", "reason"]
ANSWER_KEYS = ["AOR", "binding", "registrar", "trace", "trace_until", "exchanges"]


def validate(row):
    return record_from_row(row, timer_interval=TI, default_expires=3600)


class Lab:
    def __init__(self, *configs) -> None:
        configs = configs or (CONFIG,)
        self.engine, self.sender, self.clock = make_engine(timer_interval=TI)
        self.clock.advance(NOW)
        self.store = MemoryStore(configs)
        self.metrics = Metrics(engine=self.engine)
        self.commands = RegistrantCommands(self.engine, self.store, validate, self.metrics.row_skipped)
        self.table = self.commands.table()
        self.engine.apply(configs)
        self.engine.start()

    def call(self, method: str, params=None):
        command = self.table.resolve(method)
        return command.handler(bind_params(command, params))

    def next_request(self):
        for _ in range(200):
            if self.sender.sent:
                return self.sender.pop()
            self.clock.advance(1)
        raise AssertionError("nothing was sent")

    def register(self, config=CONFIG) -> None:
        reply(self.next_request(), 401, "Unauthorized", CHALLENGE)
        reply(self.sender.pop(), 200, "OK", f"Contact: <{config.binding_uri}>;expires=600")
        assert self.engine.get(config.key).state is State.REGISTERED_STATE


def triple(config=CONFIG, **extra) -> dict[str, object]:
    return {"aor": config.aor, "contact": config.binding_uri, "registrar": config.registrar, **extra}


def test_reading_an_untraced_record():
    lab = Lab()
    answer = lab.call("reg_trace", triple())
    assert list(answer) == ANSWER_KEYS
    assert answer == {
        "AOR": CONFIG.aor,
        "binding": CONFIG.binding_uri,
        "registrar": CONFIG.registrar,
        "trace": "off",
        "trace_until": None,
        "exchanges": [],
    }


def test_on_records_each_exchange_in_order_and_off_stops():
    lab = Lab()
    answer = lab.call("reg_trace", triple(trace="on", seconds=120))
    assert (answer["trace"], answer["trace_until"]) == ("on", NOW + 120)
    lab.register()
    answer = lab.call("reg_trace", triple())
    first, second = answer["exchanges"]
    assert list(first) == EXCHANGE_KEYS
    assert first["reply"].startswith("SIP/2.0 401 ") and second["reply"].startswith("SIP/2.0 200 ")
    assert first["at"] <= second["at"]
    assert first["destination"] == "127.0.0.1:5090" and first["transport"] == "UDP"
    assert lab.commands.listing.view(lab.engine.get(CONFIG.key))["trace"] == "on"
    answer = lab.call("reg_trace", triple(trace="off"))
    assert (answer["trace"], answer["trace_until"], len(answer["exchanges"])) == ("off", None, 2)
    assert lab.commands.listing.view(lab.engine.get(CONFIG.key))["trace"] == "off"
    text = _dumps(answer).decode()
    for secret in ("s3cret-pass", "acct-4711", "abc123"):
        assert secret not in text
    assert "…" in text  # UTF-8, as every MI answer


def test_on_without_seconds_traces_ten_minutes():
    lab = Lab()
    assert lab.call("reg_trace", triple(trace="on"))["trace_until"] == NOW + 600


def test_positional_params_as_opensips_cli_sends_them():
    lab = Lab()
    answer = lab.call("reg_trace", [CONFIG.aor, CONFIG.binding_uri, CONFIG.registrar, "on", "30"])
    assert answer["trace_until"] == NOW + 30


@pytest.mark.parametrize(
    "extra",
    [
        {"trace": "yes"},
        {"trace": "on", "seconds": 0},
        {"trace": "on", "seconds": 86401},
        {"trace": "on", "seconds": "ten"},
        {"trace": "on", "seconds": 1.5},
        {"trace": "off", "seconds": 10},
        {"seconds": 10},
    ],
)
def test_bad_params_are_refused(extra):
    lab = Lab()
    with pytest.raises(MIError) as raised:
        lab.call("reg_trace", triple(**extra))
    assert raised.value.code == -32602
    assert not lab.engine.trace.tracing(CONFIG.key)


def test_an_unknown_record_gets_the_error_reg_enable_gives():
    lab = Lab()
    other = triple(aor="sip:nobody@example.test")
    with pytest.raises(MIError) as trace_error:
        lab.call("reg_trace", other)
    with pytest.raises(MIError) as enable_error:
        lab.commands._find(other)
    assert trace_error.value.to_json() == enable_error.value.to_json() == {"code": 404, "message": "No such registrant"}


def test_too_many_traced_records_is_an_error_naming_the_bound():
    configs = [record(aor=f"sip:u{i}@example.test") for i in range(MAX_TRACED + 1)]
    lab = Lab(*configs)
    for config in configs[:-1]:
        lab.call("reg_trace", triple(config, trace="on"))
    with pytest.raises(MIError) as raised:
        lab.call("reg_trace", triple(configs[-1], trace="on"))
    assert raised.value.code == 400 and str(MAX_TRACED) in str(raised.value.data)


def test_reg_list_carries_the_availability_keys_after_the_others():
    lab = Lab()
    lab.clock.advance(100)
    lab.register()
    lab.clock.advance(900)
    view = lab.commands.listing.view(lab.engine.get(CONFIG.key))
    keys = list(view)
    assert keys[keys.index("next_attempt") + 1 :] == ["enabled_s", "bound_s", "availability", "flaps", "trace"]
    assert view["enabled_s"] == 1000
    assert 890 <= view["bound_s"] <= 900
    assert view["availability"] == round(view["bound_s"] / 1000, 4) or abs(view["availability"] - view["bound_s"] / 1000) < 0.001
    assert view["flaps"] == 0 and "last_outage" not in view
    # An outage: a refresh refused with a 503.
    lab.engine.force_register(CONFIG.key)
    reply(lab.next_request(), 503, "Service Unavailable", "Retry-After: 60")
    lab.clock.advance(50)
    view = lab.commands.listing.view(lab.engine.get(CONFIG.key))
    assert view["flaps"] == 1
    outage = view["last_outage"]
    assert (outage["end"], outage["cause"]) == (None, "503 Service Unavailable")
    assert NOW + 1000 <= outage["start"] <= NOW + 1002
    keys = list(view)
    assert keys[keys.index("next_attempt") + 1 :] == [
        "enabled_s", "bound_s", "availability", "flaps", "last_outage", "trace"]
    json.loads(_dumps(view))


def test_a_record_never_enabled_has_no_availability():
    config = record(enabled=False)
    lab = Lab(config)
    lab.clock.advance(100)
    view = lab.commands.listing.view(lab.engine.get(config.key))
    assert (view["enabled_s"], view["bound_s"], view["availability"]) == (0, 0, None)


def test_metrics_export_availability_and_flaps_without_per_record_labels():
    configs = [record(aor=f"sip:u{i}@example.test") for i in range(3)]
    lab = Lab(*configs)
    for _ in range(3):
        sent = lab.next_request()
        reply(sent, 200, "OK", f"Contact: <{configs[0].binding_uri}>;expires=600")
    lab.clock.advance(1000)
    lab.engine.force_register(configs[0].key)
    reply(lab.next_request(), 503, "Service Unavailable")
    lab.call("reg_trace", triple(configs[1], trace="on"))
    text = lab.metrics.render().decode()
    sample = lab.metrics.registry.get_sample_value
    assert sample("uac_registrant_flaps_total") == 1
    assert sample("uac_registrant_availability_gcount") == 3
    assert sample("uac_registrant_availability_bucket", {"le": "+Inf"}) == 3
    assert sample("uac_registrant_availability_bucket", {"le": "0.5"}) == 0
    assert sample("uac_registrant_traced_records") == 1
    assert sample("uac_registrant_records_in_outage") == 1
    for line in text.splitlines():
        assert "example.test" not in line
