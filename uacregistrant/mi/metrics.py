"""Prometheus metrics: a private registry and a synchronous ``GET /metrics`` resource.

Hot paths pay nothing for what is read at scrape time: the record count per
state comes from ``state_counts()`` and the transport's counters are mirrored
from ``transport_stats()``, both called only when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..registrant.machine import Registrant
from ..registrant.observer import EngineObserver
from ..registrant.states import State

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

REGISTER_KINDS = ("register", "unregister", "auth", "retry")

# transport_stats() key -> (metric name without _total, help text).
TRANSPORT_COUNTERS: Mapping[str, tuple[str, str]] = {
    "requests_sent": ("uac_registrant_sip_requests_sent", "SIP requests sent (first copies)"),
    "retransmissions": ("uac_registrant_retransmissions", "SIP request retransmissions (Timer E)"),
    "timeouts": ("uac_registrant_transaction_timeouts", "Client transactions ended by Timer F"),
    "responses_received": ("uac_registrant_sip_responses_received", "SIP responses received"),
    "stray_responses": (
        "uac_registrant_stray_responses",
        "SIP responses matching no client transaction",
    ),
    "malformed_datagrams": (
        "uac_registrant_malformed_datagrams",
        "Malformed SIP messages dropped",
    ),
    "incoming_requests": ("uac_registrant_sip_requests_received", "SIP requests received"),
}

# Buckets of the availability histogram (bound seconds / enabled seconds per record).
AVAILABILITY_BOUNDS = (0.5, 0.9, 0.95, 0.99, 0.999)

StateCounts = Callable[[], Mapping[str, int]]
TransportStats = Callable[[], Mapping[str, int]]


class _ScrapeTimeCollector(Collector):
    def __init__(
        self,
        state_counts: StateCounts | None,
        transport_stats: TransportStats | None,
        slots_reclaimed: Callable[[], int] | None,
        engine: object | None = None,
    ):
        self._state_counts = state_counts
        self._transport_stats = transport_stats
        self._slots_reclaimed = slots_reclaimed
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "uac_registrant_records", "Registrant records by state", labels=["state"]
        )
        if self._state_counts is not None:
            for state, count in self._state_counts().items():
                records.add_metric([state], count)
        yield records
        stats = self._transport_stats() if self._transport_stats is not None else {}
        for key, (name, documentation) in TRANSPORT_COUNTERS.items():
            yield CounterMetricFamily(name, documentation, value=stats.get(key, 0))
        yield CounterMetricFamily(
            "uac_registrant_slots_reclaimed",
            "In-flight slots the watchdog took back from records with nothing in flight",
            value=self._slots_reclaimed() if self._slots_reclaimed is not None else 0,
        )
        if self._engine is not None:
            yield from _diagnostics(self._engine)


def _diagnostics(engine) -> Iterator[Metric]:
    """Per-record diagnostics in aggregate: no label names a record, whatever their number."""
    availability, trace = engine.availability, engine.trace
    # One pass over the records, at scrape time only.
    summary = availability.distribution(engine, AVAILABILITY_BOUNDS)
    buckets = [(str(bound), count) for bound, count in zip(AVAILABILITY_BOUNDS, summary.counts)]
    buckets.append(("+Inf", summary.count))
    yield GaugeHistogramMetricFamily(
        "uac_registrant_availability",
        "Records by availability (seconds bound / seconds enabled); records never enabled are left out",
        buckets=buckets,
        gsum_value=summary.total,
    )
    yield CounterMetricFamily(
        "uac_registrant_flaps", "Times a record fell out of REGISTERED into a failed state", value=availability.flaps
    )
    yield GaugeMetricFamily(
        "uac_registrant_records_in_outage", "Records whose last outage is going on", value=summary.in_outage
    )
    yield GaugeMetricFamily("uac_registrant_traced_records", "Records traced now (reg_trace)", value=trace.traced_count)
    yield GaugeMetricFamily(
        "uac_registrant_failed_exchanges_kept",
        "Records keeping the exchange they failed on",
        value=trace.failed_count,
    )


class MetricsObserver(EngineObserver):
    """Feeds what the engine tells into ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def sent(self, registrant: Registrant, kind: str) -> None:
        self.metrics.register_sent("unregister" if kind == "remove-all" else kind)

    def replied(self, registrant: Registrant, code: int) -> None:
        self.metrics.reply(code)

    def destination(self, destination: object) -> None:
        self.metrics.destination(destination)

    def rate_limited(self) -> None:
        self.metrics.rate_limited()

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        if new is State.WRONG_CREDENTIALS_STATE:
            self.metrics.auth_failure()


class Metrics:
    """Every metric the service exports, in a registry of its own.

    ``state_counts()`` returns ``{state name: number of records}`` (include
    the zero states for stable series); ``transport_stats()`` returns the
    transaction layer's counters under the keys of ``TRANSPORT_COUNTERS``.
    """

    def __init__(
        self,
        *,
        state_counts: StateCounts | None = None,
        transport_stats: TransportStats | None = None,
        slots_reclaimed: Callable[[], int] | None = None,
        engine: object | None = None,
    ) -> None:
        """``engine``: the registrant Engine, for the diagnostics (availability, flaps, traces)."""
        self.registry = CollectorRegistry()
        self.registry.register(_ScrapeTimeCollector(state_counts, transport_stats, slots_reclaimed, engine))

        def counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, documentation, labels, registry=self.registry)

        self._register_sent = counter(
            "uac_registrant_register_sent", "REGISTER requests started, by kind", ("kind",)
        )
        for kind in REGISTER_KINDS:
            # Present from the start, so rate() sees the first increment.
            self._register_sent.labels(kind=kind)
        self._replies = counter(
            "uac_registrant_replies", "Final replies to REGISTER", ("class", "code")
        )
        self._auth_failures = counter(
            "uac_registrant_auth_failures", "Registrations ended in WRONG_CREDENTIALS"
        )
        self._rows_skipped = counter(
            "uac_registrant_rows_skipped", "Table rows skipped as invalid, at start-up and by reg_reload"
        )
        self._rate_limited = counter(
            "uac_registrant_rate_limited", "REGISTERs delayed by the global rate limit"
        )
        self._destinations = counter(
            "uac_registrant_destination_requests",
            "REGISTER requests by the next hop they went to (RFC 3263 target)",
            ("destination",),
        )
        self._destination_children: dict[object, Counter] = {}
        self._sent_children: dict[str, Counter] = {}
        self._reply_children: dict[int, Counter] = {}
        self._mi_calls = counter(
            "uac_registrant_mi_calls", "MI commands called", ("method", "result")
        )

    def register_sent(self, kind: str) -> None:
        child = self._sent_children.get(kind)
        if child is None:
            if kind not in REGISTER_KINDS:
                raise ValueError(f"unknown REGISTER kind {kind!r}")
            child = self._sent_children[kind] = self._register_sent.labels(kind=kind)
        child.inc()

    def destination(self, destination: object) -> None:
        """A request went to ``destination``: ``str(destination)`` is the label."""
        child = self._destination_children.get(destination)
        if child is None:
            child = self._destination_children[destination] = self._destinations.labels(
                destination=str(destination)
            )
        child.inc()

    def reply(self, code: int) -> None:
        # Children looked up once: this runs for every reply.
        child = self._reply_children.get(code)
        if child is None:
            child = self._reply_children[code] = self._replies.labels(
                **{"class": f"{code // 100}xx", "code": str(code)}
            )
        child.inc()

    def auth_failure(self) -> None:
        self._auth_failures.inc()

    def row_skipped(self) -> None:
        self._rows_skipped.inc()

    def rate_limited(self) -> None:
        self._rate_limited.inc()

    def mi_call(self, method: str, result: str) -> None:
        """Fits ``MIResource(on_call=...)``."""
        self._mi_calls.labels(method=method, result=result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsResource(Resource):
    """``GET /metrics`` in the Prometheus text format, rendered in the reactor thread."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return self._metrics.render()
