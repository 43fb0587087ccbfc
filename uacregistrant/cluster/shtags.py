"""Sharing tags: which node registers the records of a tag.

A tag is active on the node whose cluster session holds the tag's database
lock.  Every ``takeover_s / 3`` seconds the manager writes its heartbeat, hands
over tags another node asked for, and tries the free tags it may take.
Taking a tag resumes its records from the runtime state the previous owner
shared (same Call-ID, higher CSeq); giving one up gracefully writes that state
first, then unlocks.

Fail static: a node that loses its session keeps the tags it held ("static")
and goes on registering their records (they are in memory) until it is back,
or until it has been away longer than ``static_limit_s``.  Back, it locks its
static tags again, or steps down from those another node took meanwhile.

Who may take a free tag: if the tag's noted owner is another node, only once
that node's heartbeat is ``takeover_s`` old (dead, or cut off from the
database) and this node has itself been connected for ``grace_s`` (after a
database outage every heartbeat is old: the owners get that long to come back
first).

Fair shares: a node that already holds ``ceil(tags / live nodes)`` tags does
not take more, and gives up the extra ones when more nodes come up, so that
the tags spread over the nodes.  Live nodes are those with a fresh heartbeat.
A tag left free for a whole ``takeover_s`` is taken whatever the share, so
none stays orphaned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
from typing import Callable

from prometheus_client import Gauge
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..registrant.engine import Engine
from ..registrant.observer import Transitions
from ..registrant.machine import Registrant
from ..registrant.persist import resume, snapshot
from ..registrant.record import RecordKey
from ..registrant.states import State
from ..store.interface import IRegistrantStore, RuntimeState
from .locks import ILockBackend, Owner, PostgresLocks, Survey

log = Logger()

# Store calls may be slower than lock queries (a large runtime table), but not stuck.
STORE_BOUND = 30.0

# A refresh in flight does not mean the binding is gone: its owner may have
# died (or let go) between the request and the 200.
_IN_REFRESH = (State.REGISTERING_STATE, State.AUTHENTICATING_STATE)


def tag_of(registrant: Registrant) -> str | None:
    """The record's sharing tag as ``name/cluster_id``; None if it has none.

    A cluster id of 0 or less means no tag, as in OpenSIPS.
    """
    shtag = registrant.config.shtag
    if shtag is None or shtag[1] <= 0:
        return None
    return f"{shtag[0]}/{shtag[1]}"


def resumable(state: RuntimeState, now: float) -> RuntimeState:
    """The saved state as a taker goes on from it.

    Caught in a refresh, it counts as registered while its binding lasts.  Its
    CSeq moves on by one per second since it was written: an owner cut off from
    the database may have gone on refreshing meanwhile (a refresh every few
    seconds at most), and the registrar refuses a CSeq below the last it saw in
    the dialog.
    """
    unseen = max(0, int(now - state.updated_at))
    if state.state in _IN_REFRESH and state.expires_at > now:
        return dataclasses.replace(state, state=int(State.REGISTERED_STATE), cseq=state.cseq + unseen)
    return dataclasses.replace(state, cseq=state.cseq + unseen)


def lock_backend(config, reactor) -> ILockBackend:
    """The lock backend on the database of ``db_url``."""
    if config.db_url.kind == "mysql":
        from .mysql_locks import MySQLLocks

        return MySQLLocks(config.db_url.mysql, config.node_id, reactor, takeover_s=config.shtag_takeover_s)
    return PostgresLocks(config.db_url.dsn, config.node_id, reactor)


class UnknownTag(KeyError):
    """No loaded record has this sharing tag."""


@dataclass(frozen=True, slots=True)
class Hold:
    """How this node holds a tag: through its database lock, or static (database away)."""

    static: bool
    since: float


class ShtagManager:
    def __init__(
        self,
        backend: ILockBackend,
        node_id: str,
        engine: Engine,
        store: IRegistrantStore,
        clock: IReactorTime,
        takeover_s: float,
        *,
        static_limit_s: float = 600.0,
        flush_runtime: Callable[[], Deferred] = lambda: succeed(None),
    ) -> None:
        self.backend = backend
        self.node_id = node_id
        self.engine = engine
        self.store = store
        self.clock = clock
        self.takeover_s = takeover_s
        self.period = takeover_s / 3
        # A reconnecting owner needs a tick to notice and one to connect; a third is margin.
        self.grace_s = takeover_s
        self.static_limit_s = static_limit_s
        # Writes what the runtime writer still holds for a tag being handed over.
        self.flush_runtime = flush_runtime
        self.held: set[str] = set()
        self._since: dict[str, float] = {}
        # Tags taken because an operator asked for them here: never given up for fairness.
        self.pinned: set[str] = set()
        # When the session was lost (None while connected): the held tags are static.
        self.away_since: float | None = None
        # Records of static tags that stepped aside: the registrar refused their dialog.
        self._yielded: set[RecordKey] = set()
        self._connected_at = 0.0
        self._free_since: dict[str, float] = {}
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        self._busy = False
        self._again = False
        self._stopping = False
        engine.subscribe(Transitions(self._refused))
        backend.on_notify = lambda tag: self.poke()

    @classmethod
    def for_service(cls, service) -> ShtagManager:
        """The manager of a RegistrantService with clustering on (PostgreSQL or MySQL)."""
        config = service.config
        manager = cls(
            lock_backend(config, service.reactor),
            config.node_id,
            service.engine,
            service.store,
            service.reactor,
            config.shtag_takeover_s,
            static_limit_s=config.shtag_static_limit_s,
            flush_runtime=service.runtime.flush,
        )
        # What the runtime writer kept while the database was away goes as soon
        # as the store is back, not at the writer's next (backed off) retry.
        add_recovery_handler = getattr(service.store, "add_recovery_handler", None)
        if add_recovery_handler is not None:
            add_recovery_handler(service.runtime.flush)
        registry = service.metrics.registry
        Gauge("uac_registrant_shtags_held", "sharing tags active on this node", registry=registry).set_function(
            lambda: len(manager.held)
        )
        Gauge(
            "uac_registrant_cluster_database_away_seconds",
            "seconds since this node lost its cluster session (0 while connected)",
            registry=registry,
        ).set_function(manager.away_for)
        return manager

    # -- what the scheduler asks ---------------------------------------------

    def active(self, registrant: Registrant) -> bool:
        tag = tag_of(registrant)
        return tag is None or (tag in self.held and registrant.key not in self._yielded)

    def tags(self) -> dict[str, list[Registrant]]:
        """The loaded records by sharing tag (recomputed each time: reg_reload may change them)."""
        groups: dict[str, list[Registrant]] = {}
        for registrant in self.engine:
            tag = tag_of(registrant)
            if tag is not None:
                groups.setdefault(tag, []).append(registrant)
        return groups

    def away_for(self) -> float:
        return 0.0 if self.away_since is None else self.clock.seconds() - self.away_since

    def hold(self, tag: str) -> Hold | None:
        if tag not in self.held:
            return None
        since = self._since.get(tag, 0.0)
        if self.away_since is None:
            return Hold(False, since)
        return Hold(True, max(since, self.away_since))

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._loop.start(self.period, now=True)

    @inlineCallbacks
    def stop(self) -> Deferred:
        """Hand every held tag over (state written, then unlocked) and close the session."""
        self._stopping = True
        if self._loop.running:
            self._loop.stop()
        groups = self.tags()
        for tag in sorted(self.held):
            yield self._hand_over(tag, groups.get(tag, []), "shutting down")
        self.backend.reset()

    def poke(self) -> None:
        """Look again now (a NOTIFY came: a tag was asked for or released)."""
        if self._stopping or not self._loop.running:
            return
        if self._busy:
            self._again = True
        else:
            self._tick()

    # -- the loop ------------------------------------------------------------

    @inlineCallbacks
    def _tick(self) -> Deferred:
        if self._busy:
            self._again = True
            return
        self._busy = True
        try:
            while True:
                self._again = False
                yield self._look()
                if not self._again or self._stopping:
                    break
        except Exception:
            log.failure("sharing tag check failed")
        finally:
            self._busy = False

    @inlineCallbacks
    def _look(self) -> Deferred:
        groups = self.tags()
        self._quiet_standby(groups)
        if not self.backend.connected:
            if self.held:
                self._go_static("cluster session lost")
            yield self._reconnect(groups)
            return
        try:
            yield self._beat()
        except Exception as e:
            self._go_static(f"cluster session failed: {e}")
            return
        try:
            survey = yield self._db(self.backend.survey(sorted(groups)))
        except Exception as e:
            self._go_static(f"cluster session failed: {e}")
            return
        now = self.clock.seconds()
        for tag in sorted(self.held):
            holder = survey.owners.get(tag)
            wanted_by = survey.wanted.get(tag)
            if holder is not None and holder != self.node_id:
                self._step_down(tag, groups.get(tag, []), f"node {holder} holds it")
            elif wanted_by is not None and wanted_by != self.node_id:
                yield self._hand_over(tag, groups.get(tag, []), f"node {wanted_by} asked for it")
        live = {node for node, age in survey.ages.items() if age < self.takeover_s} | {self.node_id}
        share = math.ceil(len(groups) / len(live))
        yield self._give_up_extra(groups, share)
        for tag in sorted(groups):
            if tag in self.held or self._stopping:
                continue
            if survey.owners.get(tag) is not None or self._owner_may_return(tag, survey, now):
                self._free_since.pop(tag, None)
                continue
            free_since = self._free_since.setdefault(tag, now)
            wanted_by = survey.wanted.get(tag)
            if wanted_by is not None and wanted_by != self.node_id:
                continue  # promised to another node
            orphaned = now - free_since >= self.takeover_s
            if wanted_by is None and len(self.held) >= share and not orphaned:
                continue  # our share is full; a node with less takes it
            if (yield self._db(self.backend.try_lock(tag))):
                yield self._take(tag, groups[tag], pinned=wanted_by == self.node_id)

    def _db(self, d: Deferred, bound: float | None = None) -> Deferred:
        """``d``'s result, or a TimeoutError after ``bound`` (default ``takeover_s``).

        Every wait on the database is bounded: a half-dead connection must not
        hold the loop (and with it the heartbeat and the static limit).  ``d``
        itself is left alone (the runtime writer shares its own); a late result
        is dropped.
        """
        mine: Deferred = Deferred()

        def relay(result: object) -> None:
            if not mine.called:
                (mine.errback if isinstance(result, Failure) else mine.callback)(result)

        d.addBoth(relay)
        return mine.addTimeout(self.takeover_s if bound is None else bound, self.clock)

    def _beat(self) -> Deferred:
        # Bounded: a hung session is found out within the period, before others see us dead.
        return self.backend.heartbeat().addTimeout(self.period * 0.8, self.clock)

    def _owner_may_return(self, tag: str, survey: Survey, now: float) -> bool:
        """The free tag's noted owner is another node that may still come back for it."""
        owner = survey.noted.get(tag)
        if owner is None or owner == self.node_id:
            return False
        age = survey.ages.get(owner)
        alive = age is not None and age < self.takeover_s
        return alive or now - self._connected_at < self.grace_s

    def _quiet_standby(self, groups: dict[str, list[Registrant]]) -> None:
        # Records of tags held elsewhere (or resumed at load) show and do nothing.
        for tag, registrants in groups.items():
            if tag not in self.held:
                for registrant in registrants:
                    if registrant.state is not State.NOT_REGISTERED_STATE or registrant.bound:
                        self.engine.passivate(registrant)

    # -- fail static -----------------------------------------------------------

    def _go_static(self, why: str) -> None:
        """The session is gone: keep the held tags running on what is in memory."""
        self.backend.reset()
        if self.away_since is not None:
            return
        self.away_since = self.clock.seconds()
        log.warn(
            "database away ({why}); fail-static mode: {count} sharing tags stay active here",
            why=why,
            count=len(self.held),
        )

    def _refused(self, registrant: Registrant, old: State, new: State) -> None:
        """While static, a request the registrar refuses (4xx) in a record's dialog most
        likely comes after a higher CSeq from a node that took the tag meanwhile: the
        record steps aside instead of starting a new dialog over the other node's."""
        if (
            self.away_since is None
            or new is not State.REGISTRAR_ERROR_STATE
            or not 400 <= (registrant.last_code or 0) < 500
            or tag_of(registrant) not in self.held
        ):
            return
        self._yielded.add(registrant.key)
        log.warn(
            "{aor} refused by the registrar ({code}) while the database is away;"
            " another node may have taken sharing tag {tag}: stepping aside",
            aor=registrant.config.aor,
            code=registrant.last_code,
            tag=tag_of(registrant),
        )
        # Not from inside the machine's own transition.
        self.clock.callLater(0, self.engine.passivate, registrant)

    @inlineCallbacks
    def _reconnect(self, groups: dict[str, list[Registrant]]) -> Deferred:
        if self.held and self.static_limit_s and self.away_for() >= self.static_limit_s:
            self._lose_all(f"away from the database for more than {self.static_limit_s:g} s")
        try:
            yield self._db(self.backend.connect(self.takeover_s), self.takeover_s + self.period)
            self._connected_at = self.clock.seconds()
            yield self._beat()
            survey = yield self._db(self.backend.survey(sorted(self.held)))
        except Exception as e:
            self._go_static(f"cannot open the cluster session: {e}")
            return
        # Back on the database: what holds a tag is decided there again.
        self._yielded.clear()
        kept = 0
        for tag in sorted(self.held):
            holder = survey.owners.get(tag)
            noted = survey.noted.get(tag)
            taken_by = holder if holder not in (None, self.node_id) else noted
            if taken_by not in (None, self.node_id):
                self._step_down(tag, groups.get(tag, []), f"node {taken_by} took it meanwhile")
                continue
            try:
                locked = yield self._db(self.backend.try_lock(tag))
                if locked and noted is None:
                    yield self._db(self.backend.own(tag))
            except Exception as e:
                self._go_static(f"cluster session failed: {e}")
                return
            if not locked:
                self._step_down(tag, groups.get(tag, []), "another node holds it")
                continue
            self._since[tag] = self.clock.seconds()
            kept += 1
        if self.away_since is not None:
            log.info(
                "database back after {away:.1f} s; leaving fail-static mode with {kept} sharing tags",
                away=self.away_for(),
                kept=kept,
            )
            self.away_since = None
        # What the runtime writer kept while the database was away goes now.
        self.flush_runtime().addErrback(lambda _: None)
        # Take nothing new in this round: the nodes whose sessions stayed up go first,
        # so a tag does not bounce back to the node with the flaky connection.

    def _step_down(self, tag: str, registrants: list[Registrant], why: str) -> None:
        """Another node has the tag: stop here at once; no unREGISTER, no state written
        (the other node goes on with the same dialog)."""
        self.held.discard(tag)
        self.pinned.discard(tag)
        self._since.pop(tag, None)
        for registrant in registrants:
            self.engine.passivate(registrant)
        log.warn("sharing tag {tag} stepped down from ({why})", tag=tag, why=why)

    # -- taking and giving up -------------------------------------------------

    @inlineCallbacks
    def _take(self, tag: str, registrants: list[Registrant], pinned: bool) -> Deferred:
        """The lock is ours: resume the records from the shared state, then let them run."""
        self._free_since.pop(tag, None)
        if self._stopping:
            yield self._unlock(tag)
            return
        try:
            yield self._db(self.backend.own(tag))
            saved = yield self._db(self.store.load_runtime(), STORE_BOUND)
        except Exception as e:
            # Without the shared state the records would start new dialogs: try again later.
            log.warn("took sharing tag {tag} but cannot read its state ({why}); letting it go",
                     tag=tag, why=str(e))
            yield self._unlock(tag)
            return
        if self._stopping or not self.backend.connected:
            yield self._unlock(tag)
            return
        now = self.clock.seconds()
        keys = {registrant.config.key for registrant in registrants}
        # Not active yet: no visit may send with this node's stale dialog meanwhile.
        resumed = resume(
            self.engine,
            {key: resumable(state, now) for key, state in saved.items() if key in keys},
            now,
            select=lambda registrant: registrant.config.key in keys,
        )
        self.held.add(tag)
        self._since[tag] = now
        if pinned:
            self.pinned.add(tag)
        log.info("sharing tag {tag} active on node {node}: {count} records, {resumed} bindings resumed",
                 tag=tag, node=self.node_id, count=len(registrants), resumed=resumed)
        for registrant in registrants:
            if registrant.due(now):
                self.engine.scheduler.visit_now(registrant)

    @inlineCallbacks
    def _hand_over(self, tag: str, registrants: list[Registrant], why: str) -> Deferred:
        """Stop the tag's records, write their final state, then unlock."""
        self.held.discard(tag)
        self.pinned.discard(tag)
        self._since.pop(tag, None)
        now = self.clock.seconds()
        # Taken before passivating (which forgets the binding); the runtime
        # writer ignores records of tags not held, so nothing overwrites these.
        final = [
            self._final_state(registrant, now) for registrant in registrants if registrant.bound
        ]
        for registrant in registrants:
            self.engine.passivate(registrant)
        log.info("sharing tag {tag} given up ({why})", tag=tag, why=why)
        try:
            # Twice: a write already running returns at once and may leave more behind.
            yield self._db(self.flush_runtime(), STORE_BOUND)
            yield self._db(self.flush_runtime(), STORE_BOUND)
            yield self._db(self.store.save_runtime(final), STORE_BOUND)
            yield self._db(self.backend.disown(tag))
        except Exception as e:
            log.warn("could not write the state of sharing tag {tag} ({why})", tag=tag, why=str(e))
        yield self._unlock(tag)
        if self.backend.connected:
            yield self._db(self.backend.notify(tag)).addErrback(lambda _: None)

    @staticmethod
    def _final_state(registrant: Registrant, now: float) -> RuntimeState:
        state = snapshot(registrant, now)
        if registrant.bound and registrant.state in _IN_REFRESH:
            return dataclasses.replace(state, state=int(State.REGISTERED_STATE))
        return state

    @inlineCallbacks
    def _unlock(self, tag: str) -> Deferred:
        try:
            yield self._db(self.backend.unlock(tag))
        except Exception as e:
            # Closing the session frees the lock on the server for sure.
            self._go_static(f"cannot unlock {tag}: {e}")

    @inlineCallbacks
    def _give_up_extra(self, groups: dict[str, list[Registrant]], share: int) -> Deferred:
        movable = sorted(self.held - self.pinned)
        while len(self.held) > share and movable:
            tag = movable.pop()
            yield self._hand_over(tag, groups.get(tag, []), f"fair share is {share}")

    def _lose_all(self, why: str) -> None:
        """Stop every tagged record now."""
        groups = self.tags()
        for tag in sorted(self.held):
            self._step_down(tag, groups.get(tag, []), why)

    # -- MI ------------------------------------------------------------------

    @inlineCallbacks
    def set_active(self, tag: str) -> Deferred:
        """Ask for ``tag`` here: its owner hands it over and this node takes it."""
        if tag not in self.tags():
            raise UnknownTag(tag)
        if tag in self.held:
            self.pinned.add(tag)
            return None
        yield self._db(self.backend.request(tag, 2 * self.takeover_s))
        log.info("asked for sharing tag {tag}", tag=tag)
        self.poke()
        return None

    @inlineCallbacks
    def listing(self) -> Deferred:
        """[(tag, owner, how held here)] for shtag_list; local knowledge if the database is away."""
        tags = sorted(self.tags())
        owners: dict[str, Owner] = {}
        if self.backend.connected:
            try:
                owners = yield self._db(self.backend.owners(tags))
            except Exception as e:
                log.warn("cannot read the sharing tag owners ({why})", why=str(e))
        rows = []
        for tag in tags:
            owner = owners.get(tag)
            hold = self.hold(tag)
            if owner is None and hold is not None:
                owner = Owner(self.node_id, None)
            rows.append((tag, owner or Owner(None, None), hold))
        return rows
