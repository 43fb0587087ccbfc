"""Arbitrary replies and arbitrary record fields never leave a record stuck.

Whatever a registrar answers (any status, any header value, garbage) and
whatever a row holds, every record settles once its transaction ends, the
in-flight window empties, and a healthy record beside it still registers.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uacregistrant.registrant.states import IN_FLIGHT, State
from uacregistrant.sip.message import Response

from .fakes import CHALLENGE, STALE, make_engine, record, timeout

TI = 10
BINDING = "sip:fuzz@127.0.0.1:5070"
HEALTHY = record(aor="sip:healthy@example.test", binding_uri="sip:healthy@127.0.0.1:5070")

# Header values never hold CR or LF once framing has parsed them.
text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)
digits = st.one_of(st.integers(0, 2**33).map(str), st.sampled_from(["\u0663\u0660", "\u00b2", "\uff16\uff10", "-1"]))
contact = st.one_of(
    text,
    st.just("*"),
    st.just(f"<{BINDING}>"),
    digits.map(lambda d: f"<{BINDING}>;expires={d}"),
    text.map(lambda t: f"<{BINDING}>;expires={t}"),
    st.just(f"<{BINDING}>;expires=600, <sip:other@h>;expires=600"),
)
header = st.one_of(
    st.tuples(st.just("Contact"), contact),
    st.tuples(st.sampled_from(["Expires", "Min-Expires", "Retry-After", "Flow-Timer"]), st.one_of(digits, text)),
    st.tuples(st.sampled_from(["WWW-Authenticate", "Proxy-Authenticate"]), st.one_of(text, st.sampled_from([CHALLENGE[18:], STALE[18:]]))),
    st.tuples(st.sampled_from(["Service-Route", "P-Associated-URI", "Via", "CSeq", "X-Other"]), text),
)
status = st.one_of(st.sampled_from([200, 401, 407, 423, 408, 403, 503, 302, 500]), st.integers(100, 699))
answer = st.one_of(
    st.tuples(status, text, st.lists(header, max_size=6)),
    st.just("timeout"),
)
field_text = st.one_of(st.none(), text)
row = st.fixed_dictionaries(
    {
        "username": field_text,
        "password": field_text,
        "expiry": st.integers(1, 2**31 - 1),
        "binding_params": st.one_of(st.none(), st.just(";reg-id=1;+sip.instance=\"<urn:x>\""), text),
        "third_party_registrant": st.one_of(st.none(), text),
    }
)


def _answer(sent, choice) -> None:
    if choice == "timeout":
        timeout(sent)
        return
    code, reason, headers = choice
    sent.deferred.callback(Response(code, reason, list(headers)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=row, answers=st.lists(answer, max_size=25))
def test_every_record_settles_and_a_healthy_one_registers(fields, answers):
    fuzzed = record(aor="sip:fuzz@example.test", binding_uri=BINDING, **fields)
    engine, sender, clock = make_engine()
    engine.apply([fuzzed, HEALTHY])
    engine.start()
    answers = list(answers)
    # Several cycles: first attempt, retries after failures, refreshes.
    for _ in range(150):
        clock.advance(2.5)
        while sender.sent:
            sent = sender.pop()
            if sent.request.header("To") == f"<{HEALTHY.aor}>":
                _answer(sent, (200, "OK", [("Contact", f"<{HEALTHY.binding_uri}>;expires=600")]))
            else:
                # Once the scripted answers run out, the registrar goes silent (Timer F).
                _answer(sent, answers.pop(0) if answers else "timeout")
        assert not sender.sent
        for registrant in engine:
            assert registrant.state not in IN_FLIGHT
        assert engine.scheduler.in_flight == 0
    assert engine.get(HEALTHY.key).state is State.REGISTERED_STATE
    assert engine.scheduler.reclaimed == 0
    # The operator can still act on the fuzzed record.
    engine.force_register(fuzzed.key)
    assert engine.scheduler.in_flight == (1 if sender.sent else 0)
