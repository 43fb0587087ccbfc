"""Every reply the record machine handles over a fake transaction layer, with time on a Clock."""

from __future__ import annotations

import re

import pytest

from uacregistrant.registrant.states import State
from uacregistrant.registrant.record import RecordKey

from .fakes import CHALLENGE, STALE, make_engine, record, reply, timeout

TI = 10  # timer_interval; with hash_size 1 a bucket is visited every 5 s


def registered(engine, sender, clock, config=None, expires=600):
    """Bring one record to REGISTERED through 401 + 200; returns the registrant."""
    config = config or record()
    engine.apply([config])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    reply(first, 401, "Unauthorized", CHALLENGE)
    second = sender.pop()
    reply(second, 200, "OK", f"Contact: <{config.binding_uri}>;expires={expires}")
    registrant = engine.get(config.key)
    assert registrant.state is State.REGISTERED_STATE
    return registrant


def test_first_register_is_spread_over_the_first_timer_interval():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.advance(TI / 2 - 0.01)
    assert sender.sent == []
    clock.advance(TI / 2)
    assert len(sender.sent) == 1


def test_register_on_the_wire():
    engine, sender, clock = make_engine()
    config = record(binding_params=";transport=udp", third_party_registrant="sip:boss@example.test")
    engine.apply([config])
    engine.start()
    clock.pump([1] * TI)
    sent = sender.pop()
    req = sent.request
    assert req.method == "REGISTER" and req.uri == config.registrar
    assert req.header("To") == f"<{config.aor}>"
    assert re.fullmatch(r"<sip:boss@example\.test>;tag=[0-9a-f]{10}", req.header("From"))
    assert req.header("Contact") == f"<{config.binding_uri}>;transport=udp;expires=600"
    assert req.header("Max-Forwards") == "70"
    assert req.header("User-Agent") == "uac-registrant test"
    assert req.cseq.number == 1 and req.cseq.method == "REGISTER"
    assert req.header("Authorization") is None
    assert req.header("Route") is None
    assert sent.destination.host == "127.0.0.1" and sent.destination.port == 5090


def test_proxy_is_the_next_hop_only():
    engine, sender, clock = make_engine()
    engine.apply([record(proxy="sip:127.0.0.2:5099;transport=tcp")])
    engine.start()
    clock.pump([1] * TI)
    sent = sender.pop()
    assert sent.request.uri == "sip:127.0.0.1:5090"
    assert (sent.destination.transport, sent.destination.host, sent.destination.port) == (
        "tcp",
        "127.0.0.2",
        5099,
    )
    assert sent.request.header("Route") is None


def test_forced_socket_picks_the_sending_socket():
    engine, sender, clock = make_engine()
    engine.apply([record(forced_socket="udp:127.0.0.1:5070")])
    engine.start()
    clock.pump([1] * TI)
    assert str(sender.pop().local) == "udp:127.0.0.1:5070"


def test_challenge_then_200_registers_with_the_same_call_id():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    reply(first, 401, "Unauthorized", CHALLENGE)
    registrant = engine.get(record().key)
    assert registrant.state is State.AUTHENTICATING_STATE
    second = sender.pop()
    assert second.request.call_id == first.request.call_id
    assert second.cseq == first.cseq + 1
    auth = second.header("Authorization")
    assert auth.startswith("Digest ") and 'username="alice"' in auth and "s3cret" not in auth
    reply(second, 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=300")
    assert registrant.state is State.REGISTERED_STATE
    assert registrant.expires == 300
    assert registrant.failures == 0


def test_proxy_challenge_gets_proxy_authorization():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 407, "Proxy Authentication Required", CHALLENGE.replace("WWW", "Proxy"))
    second = sender.pop()
    assert second.header("Proxy-Authorization").startswith("Digest ")
    assert second.header("Authorization") is None


def test_refresh_keeps_the_dialog_and_never_lets_the_binding_lapse():
    engine, sender, clock = make_engine()
    registrant = registered(engine, sender, clock, expires=60)
    granted_at = clock.seconds()
    call_id, cseq = registrant.call_id, registrant.cseq
    for cycle in range(5):
        # Nothing goes out before the refresh time T + E - 2*TI ...
        while not sender.sent:
            clock.advance(1)
            assert clock.seconds() < granted_at + 60 - TI, "the refresh came too late"
        assert clock.seconds() >= granted_at + 60 - 2 * TI
        refresh = sender.pop()
        assert refresh.request.call_id == call_id
        assert refresh.cseq == cseq + 1
        reply(refresh, 401, "Unauthorized", CHALLENGE)
        authed = sender.pop()
        reply(authed, 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=60")
        granted_at, cseq = clock.seconds(), authed.cseq
        assert registrant.state is State.REGISTERED_STATE


def test_reregister_expiry_percentage_brings_the_refresh_forward():
    engine, sender, clock = make_engine(reregister_expiry_percentage=50)
    registered(engine, sender, clock, expires=600)
    granted_at = clock.seconds()
    while not sender.sent:
        clock.advance(1)
    assert granted_at + 300 - 2 * TI <= clock.seconds() < granted_at + 300 - TI


def test_granted_expires_comes_from_our_binding_by_uri_comparison():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(
        sender.pop(),
        200,
        "OK",
        "Contact: <sip:other@127.0.0.1:5070>;expires=100",
        # Same URI by RFC 3261 §19.1.4: host case differs, extra param.
        "Contact: <sip:alice@127.0.0.1:5070;ob>;expires=120",
        "Expires: 999",
    )
    assert engine.get(record().key).expires == 120


def test_granted_expires_falls_back_to_the_expires_header_then_the_previous_value():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>", "Expires: 240")
    registrant = engine.get(record().key)
    assert registrant.expires == 240
    engine.force_register(registrant.key)
    reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>")
    assert registrant.expires == 240 and registrant.state is State.REGISTERED_STATE


def test_requests_keep_asking_for_the_wanted_expiry_not_the_granted_one():
    engine, sender, clock = make_engine()
    registrant = registered(engine, sender, clock, expires=599)
    engine.force_register(registrant.key)
    assert sender.pop().header("Contact").endswith(";expires=600")


def test_second_challenge_means_wrong_credentials_and_stops_after_max_failures():
    engine, sender, clock = make_engine(max_auth_failures=2)
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    registrant = engine.get(record().key)
    for attempt in range(2):
        reply(sender.pop(), 401, "Unauthorized", CHALLENGE)
        reply(sender.pop(), 401, "Unauthorized", CHALLENGE)
        assert registrant.state is State.WRONG_CREDENTIALS_STATE
        clock.pump([1] * 200)
    assert registrant.auth_failures == 2
    clock.pump([10] * 10_000)
    assert sender.sent == [], "kept hammering after max_auth_failures"
    # An operator acting lifts the stop.
    engine.force_register(record().key)
    assert len(sender.sent) == 1


def test_stale_challenge_is_answered_once_more():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 401, "Unauthorized", CHALLENGE)
    reply(sender.pop(), 401, "Unauthorized", STALE)
    third = sender.pop()
    assert 'nonce="n2"' in third.header("Authorization")
    reply(third, 401, "Unauthorized", STALE)
    assert engine.get(record().key).state is State.WRONG_CREDENTIALS_STATE


def test_challenge_without_credentials_is_wrong_credentials():
    engine, sender, clock = make_engine()
    engine.apply([record(username=None, password=None)])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 401, "Unauthorized", CHALLENGE)
    assert engine.get(record().key).state is State.WRONG_CREDENTIALS_STATE
    assert sender.sent == []


def test_423_retries_at_once_with_a_larger_min_expires():
    engine, sender, clock = make_engine()
    engine.apply([record(expiry=60)])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    reply(first, 423, "Interval Too Brief", "Min-Expires: 120")
    second = sender.pop()
    assert second.header("Contact").endswith(";expires=120")
    assert second.request.call_id == first.request.call_id and second.cseq == first.cseq + 1
    # A registrar that asks for no more than we asked is an error, not a loop.
    reply(second, 423, "Interval Too Brief", "Min-Expires: 120")
    assert engine.get(record().key).state is State.REGISTRAR_ERROR_STATE
    assert sender.sent == []


@pytest.mark.parametrize(
    "answer, state",
    [
        (lambda s: reply(s, 408, "Request Timeout"), State.REGISTER_TIMEOUT_STATE),
        (timeout, State.REGISTER_TIMEOUT_STATE),
        (lambda s: reply(s, 302, "Moved", "Contact: <sip:x@127.0.0.9>"), State.REGISTRAR_ERROR_STATE),
        (lambda s: reply(s, 202, "Accepted"), State.REGISTRAR_ERROR_STATE),
        (lambda s: reply(s, 603, "Decline"), State.REGISTRAR_ERROR_STATE),
        (lambda s: reply(s, 200, "OK", "Contact: <bad uri"), State.INTERNAL_ERROR_STATE),
    ],
)
def test_failures_and_the_retry_with_a_new_call_id(answer, state):
    engine, sender, clock = make_engine(failure_retry_interval=60)
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    answer(first)
    registrant = engine.get(record().key)
    assert registrant.state is state
    # Jitter spreads the retry over [30, 60] s; the bucket visit adds up to TI.
    clock.advance(29)
    assert sender.sent == []
    clock.pump([1] * (31 + TI))
    retry = sender.pop()
    assert retry.request.call_id != first.request.call_id
    assert retry.cseq == 1


def test_forbidden_backs_off_long_and_counts_toward_max_auth_failures():
    engine, sender, clock = make_engine(failure_retry_interval=60, max_auth_failures=2)
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 403, "Forbidden")
    registrant = engine.get(record().key)
    assert registrant.state is State.REGISTRAR_ERROR_STATE and registrant.auth_failures == 1
    clock.pump([1] * 119)  # four times the interval, jittered over its upper half
    assert sender.sent == []
    clock.pump([1] * (121 + TI))
    reply(sender.pop(), 403, "Forbidden")
    clock.pump([10] * 10_000)
    assert sender.sent == [], "kept trying after max_auth_failures"


def test_retry_after_is_respected():
    engine, sender, clock = make_engine(failure_retry_interval=30)
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 503, "Service Unavailable", "Retry-After: 400")
    failed_at = clock.seconds()
    while not sender.sent:
        clock.advance(1)
    assert clock.seconds() >= failed_at + 400


def test_unique_binding_removes_stale_bindings_once_per_cycle():
    engine, sender, clock = make_engine()
    config = record(binding_params=';reg-id=1;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"')
    engine.apply([config])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    two = ("Contact: <sip:alice@127.0.0.1:5070>;expires=600", "Contact: <sip:alice@10.0.0.1:5070>;expires=100")
    reply(first, 200, "OK", *two)
    star = sender.pop()
    assert star.header("Contact") == "*" and star.header("Expires") == "0"
    assert star.request.call_id == first.request.call_id
    reply(star, 200, "OK")
    fresh = sender.pop()
    assert fresh.request.call_id != first.request.call_id and fresh.cseq == 1
    # The registrar still shows two: accept it rather than loop.
    reply(fresh, 200, "OK", *two)
    assert engine.get(config.key).state is State.REGISTERED_STATE
    assert sender.sent == []


def test_disable_unregisters_with_the_same_dialog_and_enable_registers_anew():
    engine, sender, clock = make_engine()
    registrant = registered(engine, sender, clock)
    call_id = registrant.call_id
    engine.disable(record().key)
    unreg = sender.pop()
    assert unreg.header("Contact").endswith(";expires=0")
    assert unreg.request.call_id == call_id
    assert registrant.state is State.UNREGISTERING_STATE
    reply(unreg, 401, "Unauthorized", CHALLENGE)
    assert registrant.state is State.AUTHENTICATING_UNREGISTER_STATE
    reply(sender.pop(), 200, "OK")
    assert registrant.state is State.NOT_REGISTERED_STATE and not registrant.bound
    clock.pump([1] * 3 * TI)
    assert sender.sent == []
    engine.enable(record().key)
    again = sender.pop()
    assert again.request.call_id != call_id and again.cseq == 1


def test_disable_while_register_in_flight_unregisters_when_the_200_comes():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    engine.disable(record().key)
    assert sender.sent == []
    reply(first, 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    unreg = sender.pop()
    assert unreg.header("Contact").endswith(";expires=0")
    reply(unreg, 200, "OK")
    assert engine.get(record().key).state is State.NOT_REGISTERED_STATE


def test_disabled_rows_are_not_registered():
    engine, sender, clock = make_engine()
    engine.apply([record(enabled=False)])
    engine.start()
    clock.pump([1] * 5 * TI)
    assert sender.sent == []


def test_rate_limit_spreads_a_burst_and_loses_nothing():
    engine, sender, clock = make_engine(max_register_rate=2)
    configs = [record(aor=f"sip:u{i}@example.test") for i in range(20)]
    engine.apply(configs)
    engine.start()
    clock.pump([1] * TI)
    seen = []
    for _ in range(40):
        seen.append(len(sender.sent))
        clock.advance(0.5)
    assert max(b - a for a, b in zip(seen, seen[1:])) <= 2
    assert len(sender.sent) == 20
    assert engine.scheduler.rate_limited > 0
    assert len({s.request.header("To") for s in sender.sent}) == 20


def test_apply_is_a_diff():
    engine, sender, clock = make_engine()
    keep, change, drop = (record(aor=f"sip:{n}@example.test") for n in ("keep", "change", "drop"))
    engine.apply([keep, change, drop])
    engine.start()
    clock.pump([1] * TI)
    while sender.sent:
        s = sender.pop()
        reply(s, 200, "OK", f"Contact: <{keep.binding_uri}>;expires=600")
    before = {r.config.aor: (r.call_id, r.cseq) for r in engine}
    changed = record(aor=change.aor, expiry=900)
    new = record(aor="sip:new@example.test")
    engine.apply([keep, changed, new])
    unreg = sender.pop()
    assert unreg.request.header("To") == f"<{drop.aor}>" and unreg.header("Contact").endswith(";expires=0")
    reply(unreg, 200, "OK")
    assert engine.get(drop.key) is None
    assert (engine.get(keep.key).call_id, engine.get(keep.key).cseq) == before[keep.aor]
    assert engine.get(changed.key).call_id == before[change.aor][0]
    engine.force_register(changed.key)
    assert sender.pop().header("Contact").endswith(";expires=900")
    assert engine.get(new.key).state is State.NOT_REGISTERED_STATE
    clock.pump([1] * TI)
    assert any(s.request.header("To") == f"<{new.aor}>" for s in sender.sent)


def test_shutdown_unregisters_bound_records_and_leaves_the_clock_clean():
    engine, sender, clock = make_engine()
    registrant = registered(engine, sender, clock)
    done = engine.shutdown(unregister=True, timeout=5)
    unreg = sender.pop()
    reply(unreg, 401, "Unauthorized", CHALLENGE)
    reply(sender.pop(), 200, "OK")
    assert done.called
    assert registrant.state is State.NOT_REGISTERED_STATE
    assert clock.getDelayedCalls() == []


def test_shutdown_gives_up_after_the_timeout():
    engine, sender, clock = make_engine()
    registered(engine, sender, clock)
    done = engine.shutdown(unregister=True, timeout=5)
    assert len(sender.sent) == 1
    clock.advance(4.9)
    assert not done.called
    clock.advance(0.2)
    assert done.called
    assert sender.sent[0].deferred.called  # the pending transaction was cancelled
    assert clock.getDelayedCalls() == []


def test_operator_actions_on_unknown_records_raise_key_error():
    engine, _, _ = make_engine()
    with pytest.raises(KeyError):
        engine.enable(RecordKey("sip:x@y", "sip:x@z", "sip:y"))


def test_a_window_of_registrations_in_flight_holds_back_the_rest():
    engine, sender, clock = make_engine()
    engine.scheduler.max_in_flight = 5
    engine.apply([record(aor=f"sip:w{i}@example.test") for i in range(20)])
    engine.start()
    clock.pump([1] * TI)
    assert len(sender.sent) == 5
    assert engine.scheduler.in_flight == 5
    for _ in range(3):
        reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    assert len(sender.sent) == 5  # each settled one let the next go
    while sender.sent:
        reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    assert engine.state_counts()["REGISTERED_STATE"] == 20
    assert engine.scheduler.in_flight == 0


def test_state_counts_follow_every_change():
    engine, sender, clock = make_engine()
    configs = [record(aor=f"sip:c{i}@example.test") for i in range(4)]
    engine.apply(configs)

    def recount():
        counts = {}
        for registrant in engine:
            counts[registrant.state.name] = counts.get(registrant.state.name, 0) + 1
        return {name: n for name, n in engine.state_counts().items() if n} == counts

    assert recount()
    engine.start()
    clock.pump([1] * TI)
    assert recount()
    reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    reply(sender.pop(), 403, "Forbidden")
    assert recount()
    engine.apply(configs[:3])  # one dropped (unregistered if bound)
    while sender.sent:
        reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    assert recount()
    assert sum(engine.state_counts().values()) == len(engine)
