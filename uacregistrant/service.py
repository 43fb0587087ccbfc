"""Assembles the service: transports, engine, store, MI and metrics.

``RegistrantService`` is also the embedding API: build it from code with any
``IRegistrantStore`` (``MemoryStore`` for a plain list of records), hand it an
``IRequestSender`` to reuse the host application's SIP transport instead of
opening sockets of its own, and ``subscribe`` to state changes.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from prometheus_client import Gauge, Info

from .cluster.shtags import ShtagManager, tag_of
from . import __version__
from .config import Config
from .mi.cluster_commands import ClusterCommands
from .mi.commands import RegistrantCommands
from .mi.events import EventPoster
from .mi.fifo import FifoError, MIFifo
from .mi.health import Health, HealthResource
from .mi.jsonrpc import MIResource
from .mi.metrics import Metrics, MetricsObserver, MetricsResource
from .mi.site import HttpLimits, build_root, make_site
from .mi.status import StatusResource
from .registrant.engine import Engine
from .registrant.keepalive import Keepalives
from .registrant.machine import Registrant
from .registrant.observer import Transitions
from .registrant.persist import RuntimeWriter, resume
from .registrant.policy import Timing
from .registrant.states import IN_FLIGHT, State
from .sip.randomness import BufferedRandom
from .store import make_store
from .store.interface import IRegistrantStore, StoreUnavailable
from .store.probe import DatabaseProbe
from .store.rows import record_from_row
from .transport.dns import SIPResolver, make_resolver
from .transport.interfaces import IRequestSender
from .transport.layer import TransactionLayer
from .transport.cap import ensure_descriptors
from .transport.stream import StreamLimits
from .transport.tls import TLSSettings

log = Logger()

# Seconds after the unREGISTERs of a shutdown for writing the runtime state and closing.
_CLOSING_TIME = 1.0

Subscriber = Callable[[Registrant, State, State], None]

# The transaction layer's counters under the names the metrics expect.
_TRANSPORT_STATS = {
    "requests_sent": "requests_sent",
    "retransmissions": "retransmissions",
    "timeouts": "timeouts",
    "responses_received": "responses_received",
    "stray_responses": "stray_responses",
    "malformed_datagrams": "malformed_dropped",
    "incoming_requests": "incoming_requests",
}


class RegistrantService(MultiService):
    """Keeps every enabled record of the store registered."""

    def __init__(
        self,
        config: Config,
        reactor,
        *,
        store: IRegistrantStore | None = None,
        sender: IRequestSender | None = None,
        rng: random.Random | None = None,
        serve_mi: bool = True,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.store = store if store is not None else make_store(config.db_url, config.columns, reactor)
        self.layer: TransactionLayer | None = None
        if sender is None:
            self.layer = TransactionLayer(
                reactor,
                reactor,
                random=BufferedRandom(),
                user_agent=config.user_agent,
                tls=TLSSettings(
                    ca=config.tls_ca_file,
                    cert_file=config.tls_cert_file,
                    key_file=config.tls_key_file,
                    verify=config.tls_verify,
                ),
                stream_limits=StreamLimits(
                    idle_timeout=config.tcp_idle_timeout, max_connections=config.tcp_max_connections
                ),
            )
            sender = self.layer
        # Clustering: sharing tags decide which records this node registers.
        self.cluster: ShtagManager | None = None
        self.runtime = RuntimeWriter(self.store, reactor, active=self._registers_here)
        self.engine = Engine(
            clock=reactor,
            sender=sender,
            resolver=SIPResolver(make_resolver(config.dns_servers, reactor), reactor),
            timing=Timing(
                timer_interval=config.timer_interval,
                reregister_expiry_percentage=config.reregister_expiry_percentage,
                failure_retry_interval=config.failure_retry_interval,
                retry_backoff_cap=config.retry_backoff_cap,
                max_auth_failures=config.max_auth_failures,
            ),
            hash_size=config.hash_size,
            max_register_rate=config.max_register_rate,
            user_agent=config.user_agent,
            rng=rng,
            keepalives=(
                Keepalives(reactor, sender.send_keepalive, interval=config.keepalive_interval, rng=rng)
                if isinstance(sender, TransactionLayer)
                else None
            ),
            active=self._registers_here,
            write_ahead=self.runtime.write_ahead,
        )
        self.engine.subscribe(self.runtime)
        if isinstance(sender, TransactionLayer):
            sender.flow_observers.append(self.engine.flow_lost)
        self.metrics = Metrics(
            state_counts=self.engine.state_counts,
            transport_stats=self._transport_stats,
            slots_reclaimed=lambda: self.engine.scheduler.reclaimed,
            engine=self.engine,
        )
        self.engine.subscribe(MetricsObserver(self.metrics))
        self.events: EventPoster | None = None
        if config.event_url:
            self.events = EventPoster(config.event_url, clock=reactor)
            self.engine.subscribe(Transitions(self._post_event))
        self.table_loaded = Gauge(
            "uac_registrant_table_loaded",
            "1 once the registrant table is loaded; 0 while the database is waited for",
            registry=self.metrics.registry,
        )
        self.probe = DatabaseProbe(reactor, self.store)
        Gauge(
            "uac_registrant_database_up",
            "1 while the database answers a lookup within 5 s (asked every 5 s)",
            registry=self.metrics.registry,
        ).set_function(lambda: int(self.probe.reachable))
        Info("uac_registrant_build", "the running version", registry=self.metrics.registry).info(
            {"version": __version__}
        )
        self.commands = RegistrantCommands(self.engine, self.store, self.validate, self.metrics.row_skipped)
        self.loaded: Deferred | None = None
        # Fires once the sockets are bound, the table is loaded and MI serves.
        self.ready: Deferred[None] = Deferred()
        self._is_loaded = False
        self._mi_listening: Deferred | None = None
        self._db_wait: Deferred | None = None
        self._serve_mi = serve_mi
        # What to do when start-up cannot go on; twistd stops with a non-zero exit.
        self._on_fatal = on_fatal or (lambda why: None)
        self._mi_port = None
        self._fifo: MIFifo | None = None
        self.mi_address = None
        if config.enable_clustering:
            self.cluster = ShtagManager.for_service(self)
        self._socket_names: tuple[str, ...] = ()

    def _registers_here(self, registrant: Registrant) -> bool:
        if self.cluster is not None:
            return self.cluster.active(registrant)
        # As OpenSIPS: a record with a sharing tag is loaded and listed, and
        # registered only by a node where clustering makes the tag active.
        return tag_of(registrant) is None

    # -- embedding ---------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(registrant, old_state, new_state)`` on every state change."""
        self.engine.subscribe(Transitions(subscriber))

    def health(self) -> Health:
        """What ``/health`` answers: table loaded, database answering, records by state."""
        return Health(
            table_loaded=self._is_loaded,
            database_reachable=self.probe.reachable,
            records=self.engine.state_counts(),
        )

    def reload(self) -> Deferred:
        """``reg_reload`` of the whole table, as on SIGHUP."""
        return maybeDeferred(self.commands.reg_reload, {})

    def validate(self, row) -> object:
        """A table row as a RecordConfig, or RowError."""
        return record_from_row(
            row,
            timer_interval=self.config.timer_interval,
            default_expires=self.config.default_expires,
            sockets=self._socket_names,
        )

    # -- life cycle ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.layer is not None:
            for spec in self.config.listen:
                bound = self.layer.listen(spec)
                if bound.transport != "tls" or self.config.tls_cert_file:
                    log.info("listening on {socket}", socket=str(bound))
            # What forced_socket may name.
            self._socket_names = tuple(str(spec) for spec in self.layer.sockets)
        if self._serve_mi:
            self._start_mi()
        self._check_descriptors()
        self.loaded = self._load()
        if self.cluster is not None:
            self.cluster.start()

    def _check_descriptors(self) -> None:
        config = self.config
        streams = sum(1 for spec in config.listen if spec.transport != "udp")
        capped = config.mi_max_connections * self._serve_mi + config.tcp_max_connections * streams
        needed, limit = ensure_descriptors(capped)
        if limit < needed:
            log.warn(
                "open file limit {limit} is below the {needed} the connection caps need"
                " (mi_max_connections, tcp_max_connections): raise LimitNOFILE or lower the caps",
                limit=limit,
                needed=needed,
            )

    def _start_mi(self) -> None:
        table = self.commands.table()
        if self.cluster is not None:
            ClusterCommands(self.cluster).add_to(table)
        config = self.config
        if config.mi_fifo is not None:
            self._start_fifo(table)
        mi = MIResource(
            table, token=config.mi_token, max_body=config.mi_max_body, on_call=self.metrics.mi_call
        )
        # The status page at / keeps its script, style and JSON under /status/.
        status = StatusResource(self.engine, token=config.mi_token, listing=self.commands.listing)
        site = make_site(
            build_root(
                mi,
                MetricsResource(self.metrics),
                extra={b"": status, b"status": status, b"health": HealthResource(self.health)},
            ),
            limits=HttpLimits(
                max_body=config.mi_max_body,
                idle_timeout=config.mi_idle_timeout,
                max_connections=config.mi_max_connections,
            ),
            token=config.mi_token,
            reactor=self.reactor,
        )
        endpoint = self.config.mi_listen.endpoint(self.reactor)

        def listening(port) -> None:
            self._mi_port = port
            self.mi_address = port.getHost()
            log.info("MI over HTTP on {address}", address=f"{self.mi_address.host}:{self.mi_address.port}")

        def failed(failure) -> None:
            self._fatal(f"cannot serve MI on {self.config.mi_listen}: {failure.getErrorMessage()}")

        self._mi_listening = endpoint.listen(site).addCallbacks(listening, failed)

    def _start_fifo(self, table) -> None:
        fifo = MIFifo(
            self.reactor,
            self.config.mi_fifo,
            table,
            reply_dir=self.config.mi_fifo_reply_dir,
            mode=int(self.config.mi_fifo_mode, 8),
            max_request=self.config.mi_max_body,
            on_call=self.metrics.mi_call,
        )
        try:
            fifo.start()
        except FifoError as e:
            self._fatal(f"cannot serve MI on mi_fifo: {e}")
            return
        self._fifo = fifo
        log.info("MI over the FIFO {path}", path=self.config.mi_fifo)

    @inlineCallbacks
    def _load(self) -> Deferred:
        """Open the store and load the table; a database the store says may come
        back is waited for (MI serves meanwhile, nothing is registered), anything
        else stops start-up."""
        delay = 1.0
        while True:
            try:
                yield self.store.open()
                result = yield self.store.load(self.validate)
                saved = yield self.store.load_runtime()
                break
            except StoreUnavailable as e:
                if not self.store.retry_unavailable or not self.running:
                    self._fatal(f"cannot load the registrant table: {e}")
                    return None
                log.error(
                    "database unavailable ({why}); registering nothing, retrying in {delay:.0f} s",
                    why=str(e),
                    delay=delay,
                )
                self._db_wait = deferLater(self.reactor, delay, lambda: None)
                try:
                    yield self._db_wait
                except CancelledError:  # stopped while waiting
                    return None
                delay = min(delay * 2, 30.0)
            except Exception as e:  # the one line the operator needs, then stop
                self._fatal(f"cannot load the registrant table: {str(e) or type(e).__name__}")
                return None
        for row_id, reason in result.skipped:
            log.warn("skipped row {id}: {reason}", id=row_id, reason=reason)
            self.metrics.row_skipped()
        self.engine.apply(result.records)
        select = lambda registrant: True  # noqa: E731
        if self.cluster is None:
            self._warn_tagged()
            # A tagged record is never registered without clustering: nothing to resume.
            select = self.engine.active
        resumed = resume(self.engine, saved, self.reactor.seconds(), select)
        self.engine.start()
        self.table_loaded.set(1)
        self._is_loaded = True
        # The load has just shown the database answering; the probe watches from here.
        self.probe.start(reachable=True)
        log.info(
            "loaded {count} registrant records ({skipped} rows skipped, {resumed} bindings resumed)",
            count=len(result.records),
            skipped=len(result.skipped),
            resumed=resumed,
        )
        if self._mi_listening is not None:
            yield self._mi_listening
        if self._mi_port is not None or not self._serve_mi:
            self.ready.callback(None)
        return None

    def _warn_tagged(self) -> None:
        tagged = sum(1 for registrant in self.engine if tag_of(registrant) is not None)
        if tagged:
            log.warn(
                "{count} records have a cluster_shtag while enable_clustering is off:"
                " they are loaded and never registered",
                count=tagged,
            )

    def _fatal(self, why: str) -> None:
        log.critical("{why}", why=why)
        self._on_fatal(why)

    @inlineCallbacks
    def stopService(self) -> Deferred:
        # The unREGISTERs get shutdown_timeout; saving and closing get one more second.
        timeout = self.config.shutdown_timeout
        deadline = self.reactor.seconds() + timeout + _CLOSING_TIME
        if self._db_wait is not None:
            self._db_wait.cancel()
        # Hand the sharing tags over first: their records are then not bound here,
        # so the shutdown does not unREGISTER what another node takes over.
        if self.cluster is not None:
            yield self._by(deadline - _CLOSING_TIME, self.cluster.stop(), "handing sharing tags over")
        left = max(0.0, deadline - _CLOSING_TIME - self.reactor.seconds())
        yield self.engine.shutdown(self.config.unregister_on_shutdown, min(timeout, left))
        yield self._by(deadline, self.runtime.stop(), "saving runtime state")
        if self.events is not None:
            yield self.events.stop()
        if self._mi_port is not None:
            yield maybeDeferred(self._mi_port.stopListening)
            self._mi_port = None
        if self._fifo is not None:
            self._fifo.stop()
            self._fifo = None
        if self.layer is not None:
            yield self.layer.stop()
        self.probe.stop()
        yield self.store.close()
        yield super().stopService()

    def _by(self, deadline: float, work: Deferred, what: str) -> Deferred:
        """``work``, cancelled (with one line in the log) if not done by ``deadline``."""

        def give_up() -> None:
            log.warn("shutdown: gave up {what} at the shutdown deadline", what=what)
            work.cancel()

        timer = self.reactor.callLater(max(0.0, deadline - self.reactor.seconds()), give_up)

        def done(result: object) -> None:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                result.trap(CancelledError)

        return work.addBoth(done)

    # -- observers -------------------------------------------------------------------

    def _transport_stats(self) -> dict[str, int]:
        if self.layer is None:
            return {}
        stats = self.layer.stats
        return {name: getattr(stats, attr) for name, attr in _TRANSPORT_STATS.items()}

    def _post_event(self, registrant: Registrant, old: State, new: State) -> None:
        config = registrant.config
        # Only the end of a request in flight has a reply (or a timeout) behind it;
        # a change from a settled state is caused by sending, not by a reply.
        replied = old in IN_FLIGHT
        self.events.emit(
            {
                "aor": config.aor,
                "contact": config.binding_uri,
                "registrar": config.registrar,
                "old_state": old.name,
                "new_state": new.name,
                "code": registrant.last_code if replied else None,
                "reason": registrant.last_reason if replied else None,
                "time": self.reactor.seconds(),
            }
        )

