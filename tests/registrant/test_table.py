"""The record machine's table, without a reactor: total, and every row keeps the invariants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.registrant.machine import SENDS, STARTS, TABLE, Effect, Event, UndefinedTransition, render_table, step
from uacregistrant.registrant.states import FAILED, IN_FLIGHT, State

ROWS = sorted(TABLE.items(), key=lambda item: (item[0][0], item[0][1].name))
REPLIES = {
    Event.OK, Event.OK_CLEANUP, Event.OK_DISABLED, Event.OK_LOST, Event.CHALLENGE, Event.CHALLENGE_REFUSED,
    Event.NO_CREDENTIALS, Event.CHALLENGE_UNUSABLE, Event.TOO_BRIEF, Event.TOO_BRIEF_REFUSED, Event.TIMEOUT,
    Event.FORBIDDEN, Event.REJECTED, Event.MALFORMED, Event.TRANSPORT_ERROR, Event.TOO_MANY_FOLLOW_UPS,
}
WRITES = {Event.DIALOG_DURABLE, Event.DIALOG_WRITE_FAILED}
VISITS = {Event.VISIT_REGISTER, Event.VISIT_NEW_DIALOG, Event.VISIT_READY, Event.VISIT_UNREGISTER, Event.VISIT_IDLE}
REPO = Path(__file__).resolve().parents[2]


def row_id(item) -> str:
    (state, event), _ = item
    return f"{state.name}-{event.name}"


def test_the_table_is_total_over_the_ten_states():
    assert [int(s) for s in State] == list(range(10))
    assert set(TABLE) == {(state, event) for state in State for event in Event}


def test_step_refuses_what_is_not_a_pair():
    # The compiled build checks the argument types first (TypeError).
    with pytest.raises((UndefinedTransition, TypeError)):
        step("REGISTERED", Event.OK)  # type: ignore[arg-type]


@pytest.mark.parametrize("item", ROWS, ids=row_id)
def test_every_row_keeps_the_invariants(item):
    (state, event), transition = item
    effects = transition.effects
    sends = [e for e in effects if e in STARTS]
    # At most one request (or dialog write) per event, and it goes last.
    assert len(sends) <= 1
    if sends:
        assert effects[-1] is sends[0]
        # A request puts the record in a sending state; a dialog's write leaves it at rest.
        assert (transition.next in IN_FLIGHT) == (sends[0] in SENDS)
    # Entering a sending state means sending; a request cancelled is replaced
    # or the record leaves the sending states (STOP alone abandons in place).
    if transition.next in IN_FLIGHT and state not in IN_FLIGHT:
        assert sends and sends[0] in SENDS
    if Effect.CANCEL in effects and transition.next in IN_FLIGHT and event is not Event.STOP:
        assert sends and sends[0] in SENDS
    # Leaving the sending states settles: whoever waits is released.
    if state in IN_FLIGHT and transition.next not in IN_FLIGHT:
        assert Effect.RELEASE in effects
    # Failures schedule a retry in a new dialog; success schedules a refresh.
    if transition.next in FAILED and transition.next is not state:
        assert Effect.FAIL in effects or Effect.FAIL_CREDENTIALS in effects
    if Effect.FAIL in effects or Effect.FAIL_CREDENTIALS in effects:
        assert transition.next in FAILED
    if transition.next is State.REGISTERED_STATE and state is not State.REGISTERED_STATE:
        assert Effect.ACCEPT in effects or Effect.ADOPT in effects
    # A new dialog is written before any request carries it.
    if Effect.NEW_DIALOG in effects:
        assert effects[-1] is Effect.PERSIST_DIALOG
    if Effect.SEND_REGISTER in effects and state not in IN_FLIGHT:
        assert Effect.NEW_DIALOG not in effects
    # What cannot happen changes nothing: visits in flight, replies at rest.
    if (event in VISITS and state in IN_FLIGHT) or (event in REPLIES and state not in IN_FLIGHT) or (
        event in WRITES and state in IN_FLIGHT
    ):
        assert transition.next is state and effects == ()


@pytest.mark.parametrize(
    ("state", "event", "next_state", "effects"),
    [
        (State.NOT_REGISTERED_STATE, Event.VISIT_NEW_DIALOG, State.NOT_REGISTERED_STATE, ("NEW_CYCLE", "NEW_DIALOG", "PERSIST_DIALOG")),
        (State.REGISTRAR_ERROR_STATE, Event.VISIT_NEW_DIALOG, State.REGISTRAR_ERROR_STATE, ("NEW_CYCLE", "NEW_DIALOG", "PERSIST_DIALOG")),
        (State.NOT_REGISTERED_STATE, Event.DIALOG_DURABLE, State.NOT_REGISTERED_STATE, ("VISIT_NOW",)),
        (State.REGISTER_TIMEOUT_STATE, Event.VISIT_READY, State.REGISTERING_STATE, ("SEND_REGISTER",)),
        (State.NOT_REGISTERED_STATE, Event.DIALOG_WRITE_FAILED, State.INTERNAL_ERROR_STATE, ("FAIL",)),
        (State.REGISTER_TIMEOUT_STATE, Event.RESUME_DIALOG, State.REGISTER_TIMEOUT_STATE, ("ADOPT_DIALOG",)),
        (State.REGISTERED_STATE, Event.VISIT_REGISTER, State.REGISTERING_STATE, ("NEW_CYCLE", "SEND_REGISTER")),
        (State.REGISTERED_STATE, Event.VISIT_UNREGISTER, State.UNREGISTERING_STATE, ("NEW_CYCLE", "SEND_UNREGISTER")),
        (State.REGISTERING_STATE, Event.CHALLENGE, State.AUTHENTICATING_STATE, ("ANSWER_CHALLENGE",)),
        (State.AUTHENTICATING_STATE, Event.CHALLENGE_REFUSED, State.WRONG_CREDENTIALS_STATE, ("FAIL_CREDENTIALS", "RELEASE")),
        (State.AUTHENTICATING_STATE, Event.OK, State.REGISTERED_STATE, ("ACCEPT", "RELEASE")),
        (State.REGISTERING_STATE, Event.TOO_BRIEF, State.REGISTERING_STATE, ("RAISE_EXPIRES", "SEND_REGISTER")),
        (State.REGISTERING_STATE, Event.OK_LOST, State.REGISTRAR_ERROR_STATE, ("FAIL", "RELEASE")),
        (State.REGISTERING_STATE, Event.OK_CLEANUP, State.UNREGISTERING_STATE, ("BIND", "SEND_REMOVE_ALL")),
        (State.UNREGISTERING_STATE, Event.OK, State.NOT_REGISTERED_STATE, ("UNBIND", "NEW_DIALOG", "RELEASE", "PERSIST_DIALOG")),
        (State.AUTHENTICATING_UNREGISTER_STATE, Event.OK_DISABLED, State.NOT_REGISTERED_STATE, ("UNBIND", "RELEASE")),
        (State.UNREGISTERING_STATE, Event.TOO_BRIEF, State.REGISTRAR_ERROR_STATE, ("FAIL", "RELEASE")),
        (State.REGISTERING_STATE, Event.TIMEOUT, State.REGISTER_TIMEOUT_STATE, ("FAIL", "RELEASE")),
        (State.REGISTERING_STATE, Event.FORBIDDEN, State.REGISTRAR_ERROR_STATE, ("FAIL_CREDENTIALS", "RELEASE")),
        (State.AUTHENTICATING_STATE, Event.FAULT, State.INTERNAL_ERROR_STATE, ("CANCEL", "FAIL", "RELEASE")),
        (State.REGISTERED_STATE, Event.SHUTDOWN, State.UNREGISTERING_STATE, ("SET_DISABLED", "CANCEL", "NEW_CYCLE", "SEND_UNREGISTER")),
        (State.WRONG_CREDENTIALS_STATE, Event.ENABLE, State.WRONG_CREDENTIALS_STATE, ("SET_ENABLED", "MARK_NEW_DIALOG", "SCHEDULE_NOW")),
        (State.AUTHENTICATING_STATE, Event.PASSIVATE, State.NOT_REGISTERED_STATE, ("CANCEL", "RELEASE", "UNBIND")),
        (State.NOT_REGISTERED_STATE, Event.RESUME, State.REGISTERED_STATE, ("CANCEL", "ADOPT", "RELEASE")),
    ],
)
def test_rows_as_rfc_3261_section_10_reads(state, event, next_state, effects):
    transition = step(state, event)
    assert (transition.next, tuple(e.name for e in transition.effects)) == (next_state, effects)


def test_docs_render_every_row():
    design = (REPO / "docs" / "design.rst").read_text()
    assert render_table() in design


# Events a running record can meet, in any order (STOP ends a record's life).
LIVE = sorted(set(Event) - {Event.STOP}, key=lambda e: e.name)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LIVE), max_size=60))
def test_random_sequences_never_leave_a_sending_state_with_nothing_in_flight(events):
    # What the record has in flight: None, "request" or "write" (its new dialog's row).
    state, pending = State.NOT_REGISTERED_STATE, None
    for event in events:
        if (event in REPLIES and pending != "request") or (event in WRITES and pending != "write"):
            continue  # no request, no reply; no write, no commit
        transition = step(state, event)
        if event in REPLIES | WRITES or Effect.CANCEL in transition.effects:
            pending = None
        if any(e in SENDS for e in transition.effects):
            pending = "request"
        if Effect.PERSIST_DIALOG in transition.effects:
            pending = "write"
        state = transition.next
        assert (state in IN_FLIGHT) == (pending == "request"), (event, state)


def test_the_machine_imports_no_twisted():
    script = (
        "import json, sys\n"
        "import uacregistrant.registrant.machine, uacregistrant.registrant.replies\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
