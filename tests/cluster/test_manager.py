"""The sharing tag manager over an in-memory lock server, on a Clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tests.registrant.fakes import record, reply, writing_engine
from uacregistrant.cluster.shtags import ShtagManager, UnknownTag
from uacregistrant.registrant.persist import CSEQ_MARGIN, RuntimeWriter, resume
from uacregistrant.registrant.states import State
from uacregistrant.store.memory import MemoryStore

from .fakes import FakeLocks, LockServer

TAKEOVER = 3.0  # the manager looks every second
VIP = record(cluster_shtag="vip/1")


def tagged(user: str, tag: str):
    return record(aor=f"sip:{user}@example.test", binding_uri=f"sip:{user}@127.0.0.1:5070", cluster_shtag=tag)


class Node:
    def __init__(self, name: str, cluster: "Cluster", records) -> None:
        self.name = name
        self.dead = False
        # The engine asks the manager which records this node registers.
        self.engine, self.sender, _, self.writer = writing_engine(
            cluster.store, cluster.clock, active=lambda r: not self.dead and self.manager.active(r)
        )
        self.locks = FakeLocks(cluster.server, name)
        self.manager = ShtagManager(
            self.locks, name, self.engine, cluster.store, cluster.clock, TAKEOVER,
            flush_runtime=self.writer.flush,
        )
        self.engine.apply(records)

    def start(self) -> "Node":
        self.engine.start()
        self.manager.start()
        return self

    def answer(self) -> list:
        """200 to everything sent; returns what was sent."""
        sent, self.sender.sent = self.sender.sent, []
        for request in sent:
            expires = "0" if "expires=0" in request.header("Contact") else "600"
            reply(request, 200, "OK", f"Contact: {request.header('Contact').split(';')[0]};expires={expires}")
        return sent

    def get(self, config=VIP):
        return self.engine.get(config.key)

    def held(self) -> set[str]:
        return set(self.manager.held)


class Cluster:
    def __init__(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.server = LockServer(self.clock)
        self.nodes: list[Node] = []

    def node(self, name: str, records=(VIP,)) -> Node:
        node = Node(name, self, records)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.manager.stop()
            node.engine.shutdown(False, 0)
            node.writer.stop()


@pytest.fixture
def cluster():
    cluster = Cluster()
    yield cluster
    cluster.stop()
    assert cluster.clock.getDelayedCalls() == []


def registered_on_a(cluster):
    a = cluster.node("a").start()
    b = cluster.node("b").start()
    cluster.clock.pump([1] * 10)
    [sent] = a.answer()
    cluster.clock.advance(1)  # the runtime writer's batch
    assert a.get().state is State.REGISTERED_STATE
    return a, b, sent


def test_only_the_node_holding_the_tag_registers(cluster):
    a, b, sent = registered_on_a(cluster)
    assert a.held() == {"vip/1"} and b.held() == set()
    cluster.clock.pump([1] * 30)
    assert b.sender.sent == []
    assert b.get().state is State.NOT_REGISTERED_STATE
    assert not b.manager.active(b.get())
    assert cluster.store.runtime[VIP.key].call_id == sent.header("Call-ID")


def test_records_without_a_tag_are_registered_everywhere(cluster):
    plain = record(aor="sip:bob@example.test")
    a = cluster.node("a", (VIP, plain)).start()
    b = cluster.node("b", (VIP, plain)).start()
    cluster.clock.pump([1] * 11)  # the second bucket's visit, and its dialog's write
    assert sorted(s.header("To") for s in a.answer()) == sorted(["<sip:alice@example.test>", "<sip:bob@example.test>"])
    assert [s.header("To") for s in b.answer()] == ["<sip:bob@example.test>"]


def kill(node: Node) -> None:
    """What the others see of a node killed with SIGKILL: its session ends, nothing else."""
    node.manager._loop.stop()
    node.dead = True
    node.locks.server.drop(node.name)


def test_a_dead_node_tags_are_taken_once_its_heartbeat_is_old_with_the_same_binding(cluster):
    a, b, sent = registered_on_a(cluster)
    last_beat = cluster.server.beats["a"]
    written = cluster.store.runtime[VIP.key].updated_at
    kill(a)
    while not b.held():
        cluster.clock.advance(0.1)
    unseen = int(cluster.clock.seconds() - written)  # a might have refreshed meanwhile
    # Not before its heartbeat is takeover_s old, and at b's next look after that.
    assert TAKEOVER <= cluster.clock.seconds() - last_beat <= TAKEOVER + b.manager.period
    resumed = b.get()
    assert resumed.state is State.REGISTERED_STATE
    assert (resumed.call_id, resumed.from_tag) == (sent.header("Call-ID"), a.get().from_tag)
    assert unseen >= TAKEOVER and resumed.cseq == sent.cseq + CSEQ_MARGIN + unseen
    # B refreshes before the binding runs out, in the same dialog; A stays quiet.
    cluster.clock.pump([1] * 600)
    [refresh] = b.sender.sent
    assert refresh.header("Call-ID") == sent.header("Call-ID")
    assert refresh.cseq == sent.cseq + CSEQ_MARGIN + unseen + 1


def test_a_killed_session_is_reopened_and_the_node_keeps_its_tag(cluster):
    a, b, _ = registered_on_a(cluster)
    cluster.server.drop("a")  # e.g. the backend was terminated
    cluster.clock.advance(1)  # a notices, reconnects and locks it again: b never got it
    assert a.locks.connects == 2
    assert a.held() == {"vip/1"} and not a.manager.hold("vip/1").static
    assert cluster.server.locks == {"vip/1": "a"}
    cluster.clock.pump([1] * 30)
    assert b.held() == set() and b.sender.sent == []


def test_a_heartbeat_without_answer_makes_the_node_static_within_a_period(cluster):
    a, b, _ = registered_on_a(cluster)
    a.locks.hung = True
    cluster.clock.advance(1)  # the heartbeat leaves
    cluster.clock.advance(0.8)  # ... and times out
    assert not a.locks.connected  # the session is dropped, so the server frees the lock
    assert a.held() == {"vip/1"} and a.manager.hold("vip/1").static
    assert a.get().state is State.REGISTERED_STATE


def test_a_query_without_answer_does_not_hold_the_loop(cluster):
    a = cluster.node("a").start()
    cluster.clock.pump([1] * 10)
    a.answer()
    a.locks.hung_survey = True
    cluster.clock.advance(1)  # beat answered, survey left hanging ...
    assert a.locks.connected
    cluster.clock.advance(TAKEOVER)  # ... and given up: the session is suspect
    assert not a.locks.connected and a.manager.hold("vip/1").static
    a.locks.hung_survey = False
    cluster.clock.pump([1] * 2)
    assert a.held() == {"vip/1"} and not a.manager.hold("vip/1").static
    assert cluster.server.locks == {"vip/1": "a"}


def test_a_database_outage_for_everyone_changes_no_hands_and_lapses_nothing(cluster):
    a, b, sent = registered_on_a(cluster)
    a.manager.static_limit_s = 0  # for ever
    cluster.server.stop()
    cluster.store.available = False
    cluster.clock.advance(1)
    assert a.manager.away_since is not None and b.manager.away_since is not None
    refreshes = []
    for _ in range(1800):  # three expiries
        cluster.clock.advance(1)
        refreshes += a.answer()
    assert len(refreshes) == 3 and b.sender.sent == []
    assert {r.header("Call-ID") for r in refreshes} == {sent.header("Call-ID")}
    assert a.held() == {"vip/1"} and a.manager.hold("vip/1").static and b.held() == set()
    assert a.manager.away_for() == pytest.approx(1801, abs=1)
    assert cluster.store.runtime[VIP.key].cseq == sent.cseq  # kept back, not lost
    cluster.store.available = True
    cluster.server.up = True
    cluster.clock.advance(1)
    assert a.held() == {"vip/1"} and not a.manager.hold("vip/1").static
    assert a.manager.away_since is None and a.manager.away_for() == 0
    cluster.clock.pump([1] * 60)  # the runtime writer's retry
    assert cluster.store.runtime[VIP.key].cseq == refreshes[-1].cseq
    assert b.held() == set() and b.sender.sent == []


def test_the_owner_back_within_the_grace_gets_its_tag_back(cluster):
    a, b, sent = registered_on_a(cluster)
    cluster.server.stop()
    cluster.clock.pump([1] * 100)
    cluster.server.cut.add("a")  # a comes back later than b
    cluster.server.up = True
    cluster.clock.advance(1)
    assert b.locks.connected and not a.locks.connected
    cluster.clock.advance(b.manager.grace_s - 1)
    cluster.server.cut.clear()
    cluster.clock.pump([1] * 30)
    assert a.held() == {"vip/1"} and b.held() == set() and b.sender.sent == []


def test_an_owner_not_back_after_the_grace_loses_its_tag_and_steps_down_when_back(cluster):
    a, b, sent = registered_on_a(cluster)
    cluster.server.stop()
    cluster.store.available = False  # a's refreshes meanwhile are not written
    for _ in range(CSEQ_MARGIN + 1):  # refreshes the database never hears of
        a.engine.force_register(a.get().key)
        cluster.clock.pump([1] * 10)  # its bucket's visit
        [unwritten] = a.answer()
    cluster.server.cut.add("a")
    cluster.server.up = True
    cluster.store.available = True
    cluster.clock.advance(1)
    reconnected = cluster.clock.seconds()
    while not b.held():
        cluster.clock.advance(0.1)
    assert cluster.clock.seconds() - reconnected >= b.manager.grace_s
    assert b.get().call_id == sent.header("Call-ID")
    assert b.get().cseq > unwritten.cseq  # the registrar would refuse a CSeq it has seen
    cluster.server.cut.clear()
    cluster.clock.advance(1)
    assert a.held() == set() and a.get().state is State.NOT_REGISTERED_STATE


def test_a_cut_off_node_tags_are_taken_and_it_steps_down_when_back_without_unregistering(cluster):
    a, b, sent = registered_on_a(cluster)
    a.manager.static_limit_s = 0  # stepping down, not the limit, is tested here
    cut = cluster.clock.seconds()
    cluster.server.cut_off("a")
    while not b.held():
        cluster.clock.advance(0.1)
        assert a.held() == {"vip/1"}  # a goes on meanwhile
    assert cluster.clock.seconds() - cut <= TAKEOVER + 2 * b.manager.period
    assert b.get().call_id == sent.header("Call-ID")
    cluster.clock.pump([1] * 600)  # both refresh the same binding in the same dialog
    [from_a], [from_b] = a.answer(), b.answer()
    assert from_a.header("Call-ID") == from_b.header("Call-ID") == sent.header("Call-ID")
    cluster.server.cut.clear()
    cluster.clock.advance(1)
    assert a.held() == set() and a.sender.sent == []  # stepped down: no unREGISTER
    cluster.clock.pump([1] * 600)
    assert a.sender.sent == []
    [again] = b.answer()
    assert again.header("Call-ID") == sent.header("Call-ID")


def test_a_cut_off_node_refused_by_the_registrar_steps_aside_instead_of_a_new_dialog(cluster):
    a, b, sent = registered_on_a(cluster)
    a.manager.static_limit_s = 0  # stepping down, not the limit, is tested here
    cluster.server.cut_off("a")
    while not b.held():
        cluster.clock.advance(0.1)
    cluster.clock.pump([1] * 600)  # both refresh; b's higher CSeq reaches the registrar first
    [from_a], [from_b] = a.sender.sent, b.answer()
    a.sender.sent = []
    assert from_b.cseq > from_a.cseq
    reply(from_a, 400, "Invalid CSeq number")
    cluster.clock.advance(0)
    assert a.get().state is State.NOT_REGISTERED_STATE and not a.manager.active(a.get())
    assert a.held() == {"vip/1"}  # the tag's other records would go on
    cluster.clock.pump([1] * 600)
    assert a.sender.sent == []  # no new dialog over b's
    [again] = b.answer()
    assert again.header("Call-ID") == sent.header("Call-ID")
    cluster.server.cut.clear()
    cluster.clock.advance(1)
    assert a.held() == set() and a.sender.sent == []


def test_a_refusal_while_connected_is_an_ordinary_failure(cluster):
    a, b, sent = registered_on_a(cluster)
    cluster.clock.pump([1] * 600)
    [refresh] = a.sender.sent
    a.sender.sent = []
    reply(refresh, 400, "Bad Request")
    assert a.get().state is State.REGISTRAR_ERROR_STATE and a.manager.active(a.get())


def test_a_node_away_longer_than_the_limit_stops_its_tags(cluster):
    a, b, sent = registered_on_a(cluster)
    a.manager.static_limit_s = 100
    cluster.server.cut_off("a")
    cluster.clock.pump([1] * 99)
    assert a.held() == {"vip/1"}
    cluster.clock.pump([1] * 2)
    assert a.held() == set() and a.get().state is State.NOT_REGISTERED_STATE
    a.answer()
    cluster.clock.pump([1] * 600)
    assert a.sender.sent == []


def test_a_node_without_its_database_holds_nothing_and_retakes_when_it_is_back(cluster):
    cluster.server.up = False
    a = cluster.node("a", (VIP, record(aor="sip:bob@example.test"))).start()
    cluster.clock.pump([1] * 11)  # the second bucket's visit, and its dialog's write
    assert [s.header("To") for s in a.answer()] == ["<sip:bob@example.test>"]
    assert a.held() == set()
    cluster.server.up = True
    cluster.clock.advance(1)  # connects; takes nothing in that round
    assert a.held() == set()
    cluster.clock.advance(1)
    assert a.held() == {"vip/1"}
    cluster.clock.pump([1] * 10)
    assert [s.header("To") for s in a.answer()] == ["<sip:alice@example.test>"]


def test_set_active_moves_the_tag_with_its_dialog_even_in_mid_refresh(cluster):
    a, b, sent = registered_on_a(cluster)
    cluster.clock.pump([1] * 590)  # the refresh leaves from A ...
    [refresh] = a.sender.sent
    b.manager.set_active("vip/1")  # ... and the tag moves before its 200
    assert a.held() == set() and b.held() == {"vip/1"}
    assert "vip/1" in b.manager.pinned
    [again] = b.sender.sent  # the binding is due: B refreshes at once
    assert again.header("Call-ID") == sent.header("Call-ID")
    assert again.cseq == refresh.cseq + CSEQ_MARGIN + 1
    # A's late 200 changes nothing: its transaction was dropped.
    reply(refresh, 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    assert a.get().state is State.NOT_REGISTERED_STATE
    b.answer()
    assert b.get().state is State.REGISTERED_STATE


def test_set_active_of_an_unknown_tag_fails(cluster):
    a = cluster.node("a").start()
    failures = []
    a.manager.set_active("nope/1").addErrback(failures.append)
    [failure] = failures
    assert failure.check(UnknownTag)
    assert a.locks.server.wanted == {}


def test_three_nodes_share_three_tags(cluster):
    records = [tagged("t1", "one/1"), tagged("t2", "two/1"), tagged("t3", "three/1")]
    a = cluster.node("a", records).start()
    cluster.clock.advance(1)
    assert len(a.held()) == 3  # alone: everything
    b = cluster.node("b", records).start()
    c = cluster.node("c", records).start()
    cluster.clock.pump([1] * 3)
    assert sorted(len(n.held()) for n in (a, b, c)) == [1, 1, 1]
    assert a.held() | b.held() | c.held() == {"one/1", "two/1", "three/1"}


def test_a_tag_nobody_takes_is_taken_beyond_the_fair_share(cluster):
    records = [tagged("t1", "one/1"), tagged("t2", "two/1")]
    cluster.node("idle", ()).start()  # a live session that knows no tag
    a = cluster.node("a", records).start()
    cluster.clock.advance(1)
    assert len(a.held()) == 1
    cluster.clock.advance(TAKEOVER + 1)
    assert a.held() == {"one/1", "two/1"}


def test_stop_hands_the_tag_over_and_shutdown_does_not_unregister_it(cluster):
    plain = record(aor="sip:bob@example.test")
    a = cluster.node("a", (VIP, plain)).start()
    cluster.clock.pump([1] * 11)  # the second bucket's visit, and its dialog's write
    sent = {s.header("To"): s for s in a.answer()}
    cluster.clock.advance(1)
    b = cluster.node("b", (VIP, plain)).start()
    b.answer()
    a.manager.stop()
    a.engine.shutdown(True, 5)
    assert [s.header("To") for s in a.sender.sent] == ["<sip:bob@example.test>"]  # the untagged one only
    cluster.clock.advance(1)
    assert b.held() == {"vip/1"}
    assert b.get().call_id == sent["<sip:alice@example.test>"].header("Call-ID")
    a.answer()


def test_a_standby_does_not_keep_records_resumed_at_load(cluster):
    a, b, sent = registered_on_a(cluster)
    c = cluster.node("c")
    assert resume(c.engine, cluster.store.runtime, cluster.clock.seconds()) == 1
    assert c.get().state is State.REGISTERED_STATE
    c.start()
    assert c.get().state is State.NOT_REGISTERED_STATE and not c.get().bound
    cluster.clock.pump([1] * 600)
    assert c.sender.sent == []


def test_listing_shows_owner_and_how_it_is_held_here(cluster):
    a, b, _ = registered_on_a(cluster)
    [(tag, owner, hold)] = b.manager.listing().result
    assert (tag, owner.node_id, hold) == ("vip/1", "a", None)
    [(tag, owner, hold)] = a.manager.listing().result
    taken = hold.since
    assert owner.node_id == "a" and not hold.static and taken <= cluster.clock.seconds()
    cluster.clock.advance(5)
    cluster.server.stop()
    cluster.clock.advance(1)
    [(tag, owner, hold)] = a.manager.listing().result
    assert owner.node_id == "a" and hold.static and hold.since == a.manager.away_since > taken
