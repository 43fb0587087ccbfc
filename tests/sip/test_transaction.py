"""The non-INVITE client transaction (RFC 3261 §17.1.2), driven with explicit time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from uacregistrant.sip.transaction import (
    ClientTransaction,
    DeliverResponse,
    Effect,
    Retransmit,
    State,
    Terminated,
    TimedOut,
    Timers,
    TransportFailed,
    transaction_key,
)


def run_timers(tx: ClientTransaction, until: float) -> list[tuple[float, Effect]]:
    """Fire the transaction's timers in order up to ``until``; return (time, effect)."""
    seen: list[tuple[float, Effect]] = []
    while tx.deadline is not None and tx.deadline <= until:
        at = tx.deadline
        seen += [(at, effect) for effect in tx.on_timer(at)]
    return seen


def test_udp_retransmits_at_exact_times_and_times_out_at_32s() -> None:
    tx = ClientTransaction("z9hG4bKa", "REGISTER", reliable=False, now=0.0)
    seen = run_timers(tx, until=100.0)
    retransmits = [at for at, effect in seen if effect == Retransmit()]
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert seen[-2:] == [(32.0, TimedOut()), (32.0, Terminated())]
    assert tx.state is State.TERMINATED
    assert tx.deadline is None


def test_retransmission_times_are_relative_to_the_start() -> None:
    tx = ClientTransaction("z9hG4bKa", "REGISTER", reliable=False, now=1000.0)
    retransmits = [at for at, effect in run_timers(tx, 1004.0) if effect == Retransmit()]
    assert retransmits == [1000.5, 1001.5, 1003.5]


def test_reliable_never_retransmits_and_times_out_at_32s() -> None:
    tx = ClientTransaction("z9hG4bKa", "REGISTER", reliable=True, now=0.0)
    assert tx.deadline == 32.0
    assert run_timers(tx, until=100.0) == [(32.0, TimedOut()), (32.0, Terminated())]


def test_custom_timers_scale_everything() -> None:
    tx = ClientTransaction("b", "OPTIONS", reliable=False, now=0.0, timers=Timers(t1=0.05, t2=0.4, t4=0.5))
    seen = run_timers(tx, until=10.0)
    retransmits = [round(at, 6) for at, effect in seen if effect == Retransmit()]
    assert retransmits[:5] == [0.05, 0.15, 0.35, 0.75, 1.15]
    assert seen[-1] == (pytest.approx(3.2), Terminated())


def test_provisional_moves_to_proceeding_and_e_fires_every_t2() -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    assert run_timers(tx, 1.0) == [(0.5, Retransmit())]
    assert tx.on_response(100, 1.2) == [DeliverResponse(100)]
    assert tx.state is State.PROCEEDING
    # The pending E (due at 1.5) still fires, then every T2.
    seen = run_timers(tx, 14.0)
    assert [at for at, _ in seen] == [1.5, 5.5, 9.5, 13.5]
    assert {effect for _, effect in seen} == {Retransmit()}
    assert tx.on_response(180, 14.0) == [DeliverResponse(180)]
    assert tx.state is State.PROCEEDING


def test_proceeding_still_times_out_on_timer_f() -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=True, now=0.0)
    tx.on_response(100, 0.1)
    assert run_timers(tx, 40.0) == [(32.0, TimedOut()), (32.0, Terminated())]


@pytest.mark.parametrize("first", [None, 100])
@pytest.mark.parametrize("status", [200, 202, 302, 401, 408, 503, 603])
def test_final_on_udp_completes_then_timer_k_terminates(first: int | None, status: int) -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    if first is not None:
        tx.on_response(first, 0.1)
    assert tx.on_response(status, 0.2) == [DeliverResponse(status)]
    assert tx.state is State.COMPLETED
    assert tx.deadline == pytest.approx(5.2)
    # Retransmitted finals and late provisionals are absorbed.
    assert tx.on_response(status, 1.0) == []
    assert tx.on_response(100, 1.1) == []
    assert tx.on_transport_error(1.2) == []
    assert tx.on_timer(5.0) == []
    assert tx.on_timer(5.2) == [Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.deadline is None


def test_final_on_reliable_terminates_at_once() -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=True, now=0.0)
    assert tx.on_response(200, 0.3) == [DeliverResponse(200), Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.deadline is None


@pytest.mark.parametrize("provisional_first", [False, True])
def test_transport_error_fails_the_transaction(provisional_first: bool) -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    if provisional_first:
        tx.on_response(183, 0.1)
    assert tx.on_transport_error(0.2) == [TransportFailed(), Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.deadline is None


def test_terminated_ignores_everything() -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    tx.on_transport_error(0.0)
    for effects in (tx.on_response(200, 1), tx.on_response(100, 1), tx.on_timer(99), tx.on_transport_error(2)):
        assert effects == []


def test_timer_f_wins_over_a_simultaneous_timer_e() -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    # A caller that wakes up late, after both E and F were due.
    assert tx.on_timer(50.0) == [TimedOut(), Terminated()]


def test_early_wakeup_does_nothing() -> None:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    assert tx.on_timer(0.49) == []
    assert tx.deadline == 0.5


# Every (state, event) pair: the table the RFC draws as Figure 6.
TABLE = [
    # (how to reach the state, event, expected effects, expected state)
    ("trying", "1xx", [DeliverResponse(100)], State.PROCEEDING),
    ("trying", "final", [DeliverResponse(200)], State.COMPLETED),
    ("trying", "timer_e", [Retransmit()], State.TRYING),
    ("trying", "timer_f", [TimedOut(), Terminated()], State.TERMINATED),
    ("trying", "transport_error", [TransportFailed(), Terminated()], State.TERMINATED),
    ("proceeding", "1xx", [DeliverResponse(100)], State.PROCEEDING),
    ("proceeding", "final", [DeliverResponse(200)], State.COMPLETED),
    ("proceeding", "timer_e", [Retransmit()], State.PROCEEDING),
    ("proceeding", "timer_f", [TimedOut(), Terminated()], State.TERMINATED),
    ("proceeding", "transport_error", [TransportFailed(), Terminated()], State.TERMINATED),
    ("completed", "1xx", [], State.COMPLETED),
    ("completed", "final", [], State.COMPLETED),
    ("completed", "timer_k", [Terminated()], State.TERMINATED),
    ("completed", "transport_error", [], State.COMPLETED),
]


def _reach(where: str) -> ClientTransaction:
    tx = ClientTransaction("b", "REGISTER", reliable=False, now=0.0)
    if where == "proceeding":
        tx.on_response(100, 0.0)
    elif where == "completed":
        tx.on_response(200, 0.0)
    return tx


def _apply(tx: ClientTransaction, event: str) -> list[Effect]:
    if event == "1xx":
        return tx.on_response(100, 0.1)
    if event == "final":
        return tx.on_response(200, 0.1)
    if event == "transport_error":
        return tx.on_transport_error(0.1)
    assert tx.deadline is not None
    return tx.on_timer({"timer_e": 0.5, "timer_f": 32.0, "timer_k": 5.0}[event])


@pytest.mark.parametrize(("where", "event", "effects", "state"), TABLE)
def test_transition_table(where: str, event: str, effects: list[Effect], state: State) -> None:
    tx = _reach(where)
    assert _apply(tx, event) == effects
    assert tx.state is state


def test_transaction_key_is_branch_and_method() -> None:
    tx = ClientTransaction("z9hG4bKx", "REGISTER", reliable=True, now=0)
    assert tx.key == transaction_key("z9hG4bKx", "REGISTER")
    assert transaction_key("z9hG4bKx", "REGISTER") != transaction_key("z9hG4bKx", "OPTIONS")
    assert transaction_key("z9hG4bKx", "REGISTER") != transaction_key("z9hG4bKX", "REGISTER")


def test_module_imports_no_twisted() -> None:
    code = "import sys, uacregistrant.sip.transaction; sys.exit('twisted' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
