"""A record's exchange history (reg_trace): what is kept, when, for how long, and never a secret."""

from __future__ import annotations

import re
import sys

import pytest
from twisted.python.failure import Failure

from tests.transport.test_layer import REGISTRAR, Harness, register
from uacregistrant.registrant.states import State
from uacregistrant.registrant.trace import (
    MASK,
    MAX_EXCHANGES,
    MAX_TRACED,
    MAX_VALUE,
    TooManyTraced,
    mask_authorization,
    render,
    show_challenge,
)
from uacregistrant.sip.message import Request, Response, parse_message
from uacregistrant.transport.errors import TransactionTimeout, TransportError
from uacregistrant.transport.listen import Destination

from .fakes import CHALLENGE, make_engine, record, reply, timeout

TI = 10
NONCE = "abc123"
SECRETS = ("s3cret-pass", NONCE)


def started(*configs, **kw):
    engine, sender, clock = make_engine(timer_interval=TI, **kw)
    configs = configs or (record(username="acct-4711", password="s3cret-pass"),)
    engine.apply(list(configs))
    engine.start()
    return engine, sender, clock


def next_request(sender, clock):
    for _ in range(200):
        if sender.sent:
            return sender.pop()
        clock.advance(1)
    raise AssertionError("nothing was sent")


def registered(engine, sender, clock, config):
    reply(next_request(sender, clock), 401, "Unauthorized", CHALLENGE)
    reply(sender.pop(), 200, "OK", f"Contact: <{config.binding_uri}>;expires=600")
    assert engine.get(config.key).state is State.REGISTERED_STATE


def test_an_untraced_record_keeps_nothing():
    engine, sender, clock = started()
    config = record()
    registered(engine, sender, clock, config)
    reading = engine.trace.read(config.key)
    assert (reading.tracing, reading.until, reading.exchanges) == (False, None, [])
    assert engine.trace._traced == {} and engine.trace._failed == {}


def test_a_traced_record_shows_each_exchange_in_order_with_secrets_masked():
    engine, sender, clock = started()
    config = record()
    until = engine.trace.on(config.key, 600)
    assert until == clock.seconds() + 600
    registered(engine, sender, clock, config)
    reading = engine.trace.read(config.key)
    assert reading.tracing and reading.until == until
    challenge, ok = reading.exchanges
    assert challenge.outcome == ok.outcome == "reply"
    assert (challenge.transport, challenge.destination) == ("UDP", "127.0.0.1:5090")
    lines = challenge.request.split("\r\n")
    assert lines[0] == "REGISTER sip:127.0.0.1:5090 SIP/2.0"
    assert re.fullmatch(r"Via: SIP/2\.0/UDP 127\.0\.0\.1:5060;branch=z9hG4bK\w+", lines[1])
    assert "CSeq: 1 REGISTER" in lines
    assert any(line.startswith("Call-ID: ") for line in lines)
    assert "Contact: <sip:alice@127.0.0.1:5070>;expires=600" in lines
    assert challenge.reply.split("\r\n")[0] == "SIP/2.0 401 Unauthorized"
    assert 'WWW-Authenticate: Digest realm="example.test", qop="auth"' in challenge.reply
    [authorization] = [line for line in ok.request.split("\r\n") if line.startswith("Authorization:")]
    assert authorization.startswith(f'Authorization: Digest username="{MASK}", realm="example.test", nonce="{MASK}"')
    assert f'response="{MASK}"' in authorization and f'cnonce="{MASK}"' in authorization
    assert "qop=auth" in authorization and "nc=00000001" in authorization
    assert "CSeq: 2 REGISTER" in ok.request
    assert ok.reply.startswith("SIP/2.0 200 OK\r\n")
    assert challenge.at <= ok.at
    text = repr(reading)
    for secret in (*SECRETS, "acct-4711"):
        assert secret not in text


def test_at_most_the_last_eight_exchanges_are_kept():
    engine, sender, clock = started()
    config = record()
    engine.trace.on(config.key, 86400)
    registered(engine, sender, clock, config)
    for _ in range(5):
        engine.force_register(config.key)
        registered(engine, sender, clock, config)
    exchanges = engine.trace.read(config.key).exchanges
    assert len(exchanges) == MAX_EXCHANGES
    cseqs = [int(e.request.split("CSeq: ")[1].split()[0]) for e in exchanges]
    assert cseqs == sorted(cseqs) and cseqs[-1] == 12


def test_a_failing_untraced_record_keeps_its_last_failed_exchange_until_it_registers():
    engine, sender, clock = started()
    config = record()
    registered(engine, sender, clock, config)
    engine.force_register(config.key)
    reply(next_request(sender, clock), 503, "Service Unavailable", "Retry-After: 120")
    registrant = engine.get(config.key)
    assert registrant.state is State.REGISTRAR_ERROR_STATE
    [failed] = engine.trace.read(config.key).exchanges
    assert failed.outcome == "reply" and failed.reason is None
    assert failed.reply.split("\r\n")[0] == "SIP/2.0 503 Service Unavailable"
    assert "Retry-After: 120" in failed.reply
    assert engine.trace.read(config.key).tracing is False
    # A second failure replaces it: one exchange a record, never more.
    clock.advance(200)
    timeout(next_request(sender, clock))
    [failed] = engine.trace.read(config.key).exchanges
    assert failed.outcome == "timeout" and failed.reply is None
    assert failed.reason == "Timer F fired"
    assert engine.trace.failed_count == 1
    # Registered again: nothing kept.
    clock.advance(200)
    sent = next_request(sender, clock)
    reply(sent, 401, "Unauthorized", CHALLENGE)
    reply(sender.pop(), 200, "OK", f"Contact: <{config.binding_uri}>;expires=600")
    assert engine.trace.read(config.key).exchanges == []
    assert engine.trace.failed_count == 0


def test_the_failed_exchange_is_the_one_that_failed_not_the_challenge_before_it():
    engine, sender, clock = started()
    config = record()
    reply(next_request(sender, clock), 401, "Unauthorized", CHALLENGE)
    reply(sender.pop(), 403, "Forbidden")
    [failed] = engine.trace.read(config.key).exchanges
    assert failed.reply.startswith("SIP/2.0 403 Forbidden")
    assert "Authorization: Digest" in failed.request


def test_a_transport_error_is_kept_with_its_reason():
    engine, sender, clock = started()
    config = record()
    next_request(sender, clock).deferred.errback(TransportError("connection refused"))
    [failed] = engine.trace.read(config.key).exchanges
    assert (failed.outcome, failed.reason, failed.reply) == ("transport error", "connection refused", None)


def test_a_423_is_shown_with_its_min_expires_and_the_retry_after_it():
    engine, sender, clock = started()
    config = record()
    engine.trace.on(config.key, 60)
    reply(next_request(sender, clock), 423, "Interval Too Brief", "Min-Expires: 1800")
    reply(sender.pop(), 200, "OK", f"Contact: <{config.binding_uri}>;expires=1800")
    brief, ok = engine.trace.read(config.key).exchanges
    assert "Min-Expires: 1800" in brief.reply
    assert "Contact: <sip:alice@127.0.0.1:5070>;expires=1800" in ok.request


def test_a_trace_ends_at_its_limit_and_what_it_recorded_stays_readable():
    engine, sender, clock = started()
    config = record()
    engine.trace.on(config.key, 30)
    registered(engine, sender, clock, config)
    clock.advance(31)
    reading = engine.trace.read(config.key)
    assert (reading.tracing, reading.until, len(reading.exchanges)) == (False, None, 2)
    engine.force_register(config.key)
    registered(engine, sender, clock, config)
    assert len(engine.trace.read(config.key).exchanges) == 2  # nothing recorded after the limit


def test_off_stops_recording():
    engine, sender, clock = started()
    config = record()
    engine.trace.on(config.key, 600)
    engine.trace.off(config.key)
    registered(engine, sender, clock, config)
    assert engine.trace.read(config.key).exchanges == []
    assert not engine.trace.tracing(config.key)


def test_the_traced_records_are_bounded_and_ended_traces_make_room():
    configs = [record(aor=f"sip:u{i}@example.test") for i in range(MAX_TRACED + 1)]
    engine, sender, clock = started(*configs)
    for config in configs[:MAX_TRACED]:
        engine.trace.on(config.key, 60)
    with pytest.raises(TooManyTraced):
        engine.trace.on(configs[-1].key, 60)
    # Tracing one already traced again only moves its limit.
    engine.trace.on(configs[0].key, 10)
    clock.advance(11)
    engine.trace.on(configs[-1].key, 60)
    assert not engine.trace.tracing(configs[0].key) and engine.trace.tracing(configs[-1].key)
    assert engine.trace.traced_count == MAX_TRACED


def test_forget_gone_drops_what_removed_records_kept():
    engine, sender, clock = started()
    config = record()
    engine.trace.on(config.key, 60)
    reply(next_request(sender, clock), 403, "Forbidden")
    engine.scheduler.remove(config.key)
    engine.trace.forget_gone(engine)
    assert engine.trace._traced == {} and engine.trace._failed == {}


# -- rendering, pure --------------------------------------------------------------------


def test_authorization_masks_every_secret_and_keeps_the_rest():
    value = (
        'Digest username="acct-4711", realm="example.test", nonce="abc123", uri="sip:example.test",'
        ' response="0123456789abcdef", algorithm=MD5, cnonce="c0ffee", nc=00000001, qop=auth, opaque="op4"'
    )
    masked = mask_authorization(value)
    assert masked == (
        f'Digest username="{MASK}", realm="example.test", nonce="{MASK}", uri="sip:example.test",'
        f' response="{MASK}", algorithm=MD5, cnonce="{MASK}", nc=00000001, qop=auth, opaque="{MASK}"'
    )
    assert mask_authorization('Digest username="x" broken') == MASK


def test_a_challenge_shows_realm_algorithm_qop_and_stale_only():
    value = 'Digest realm="r.test", nonce="n0nce", opaque="o", algorithm=SHA-256, qop="auth,auth-int", stale=TRUE'
    assert show_challenge(value) == 'Digest realm="r.test", algorithm=SHA-256, qop="auth,auth-int", stale=TRUE'
    assert show_challenge("Digest ,,, =") == "(unreadable challenge)"


def _response(*headers: str) -> Response:
    lines = ["SIP/2.0 503 Service Unavailable", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx", "CSeq: 1 REGISTER",
             "Call-ID: c1", *headers, "Content-Length: 0", "", ""]
    response = parse_message("\r\n".join(lines).encode())
    assert isinstance(response, Response)
    return response


def _request() -> Request:
    return Request("REGISTER", "sip:user:pw@registrar.test", [("CSeq", "1 REGISTER"), ("Call-ID", "c1"),
                   ("Contact", "<sip:me:pw@10.0.0.2>;expires=600")])


def test_every_value_is_bounded_and_a_long_contact_list_is_cut():
    contacts = [f"Contact: <sip:other{i}@10.0.0.{i}>;expires=60" for i in range(20)]
    response = _response("Retry-After: " + "9" * 5000, "Service-Route: <sip:" + "x" * 5000 + ">", *contacts)
    exchange = render(_request(), Destination("tcp", "::1", 5061), 1.5, response)
    assert (exchange.transport, exchange.destination) == ("TCP", "[::1]:5061")
    for line in exchange.reply.split("\r\n"):
        assert len(line) <= len("Service-Route: ") + MAX_VALUE
    assert "Contact: (16 more)" in exchange.reply
    assert len(exchange.reply) < 2500
    # A password in a URI's user part is never shown.
    assert ":pw@" not in exchange.request and ":***@" in exchange.request


def test_a_timeout_shows_the_via_the_transaction_layer_sent():
    h = Harness()
    outcome = []
    h.layer.send_request(register(), REGISTRAR).addErrback(outcome.append)
    h.run_until_idle()
    [failure] = outcome
    assert isinstance(failure, Failure)
    exchange = render(register(), REGISTRAR, 0.0, failure.value)
    assert exchange.outcome == "timeout" and exchange.reply is None
    assert exchange.request.split("\r\n")[1].startswith("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK")
    assert "no final response" in exchange.reason


def test_an_exception_that_is_no_sip_error_shows_its_type_only():
    exchange = render(_request(), Destination("udp", "10.0.0.1", 5060), 0.0, KeyError("secret"))
    assert (exchange.outcome, exchange.reason) == ("transport error", "KeyError")


def test_a_rendered_exchange_is_small():
    exchange = render(_request(), Destination("udp", "10.0.0.1", 5060), 0.0, _response("Retry-After: 30"))
    size = sys.getsizeof(exchange) + sum(sys.getsizeof(getattr(exchange, n)) for n in exchange.__slots__)
    assert size < 1024
