"""Prometheus metrics scraped over HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor

from uacregistrant.mi.jsonrpc import Command, CommandTable, MIResource
from uacregistrant.mi.metrics import Metrics, MetricsResource
from uacregistrant.mi.site import build_root, make_site


class Sources:
    """Stands in for the engine and the transaction layer, read at scrape time."""

    def __init__(self) -> None:
        self.states = {"REGISTERED_STATE": 7, "NOT_REGISTERED_STATE": 2, "WRONG_CREDENTIALS_STATE": 0}
        self.stats = {"retransmissions": 11, "timeouts": 3, "stray_responses": 5, "malformed_datagrams": 13}
        self.state_reads = 0

    def state_counts(self) -> dict[str, int]:
        self.state_reads += 1
        return dict(self.states)

    def transport_stats(self) -> dict[str, int]:
        return dict(self.stats)


@pytest_twisted.async_yield_fixture
async def scraped():
    sources = Sources()
    metrics = Metrics(state_counts=sources.state_counts, transport_stats=sources.transport_stats)
    table = CommandTable()
    table.add(Command("reg_reload", lambda params: "OK"))
    mi = MIResource(table, on_call=metrics.mi_call)
    port = reactor.listenTCP(0, make_site(build_root(mi, MetricsResource(metrics))), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        yield base, metrics, sources
    finally:
        await port.stopListening()


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await treq.get(base + "/metrics", persistent=False)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"Content-Type") == [b"text/plain; version=0.0.4; charset=utf-8"]
    text = (await treq.text_content(response)).replace("\r\n", "\n")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest_twisted.ensureDeferred
async def test_scrape_reads_state_counts_and_transport_stats_at_scrape_time(scraped):
    base, metrics, sources = scraped
    assert sources.state_reads == 0
    samples = await scrape(base)
    assert sources.state_reads == 1
    assert value(samples, "uac_registrant_records", state="REGISTERED_STATE") == 7
    assert value(samples, "uac_registrant_records", state="NOT_REGISTERED_STATE") == 2
    assert value(samples, "uac_registrant_records", state="WRONG_CREDENTIALS_STATE") == 0
    assert value(samples, "uac_registrant_retransmissions_total") == 11
    assert value(samples, "uac_registrant_transaction_timeouts_total") == 3
    assert value(samples, "uac_registrant_stray_responses_total") == 5
    assert value(samples, "uac_registrant_malformed_datagrams_total") == 13
    assert value(samples, "uac_registrant_sip_requests_sent_total") == 0

    sources.states["REGISTERED_STATE"] = 9
    sources.stats["retransmissions"] = 12
    samples = await scrape(base)
    assert value(samples, "uac_registrant_records", state="REGISTERED_STATE") == 9
    assert value(samples, "uac_registrant_retransmissions_total") == 12


@pytest_twisted.ensureDeferred
async def test_engine_counters(scraped):
    base, metrics, _ = scraped
    for kind in ("register", "register", "auth", "unregister"):
        metrics.register_sent(kind)
    for code in (200, 200, 401, 503):
        metrics.reply(code)
    metrics.auth_failure()
    for _ in range(4):
        metrics.row_skipped()
    metrics.rate_limited()
    samples = await scrape(base)
    assert value(samples, "uac_registrant_register_sent_total", kind="register") == 2
    assert value(samples, "uac_registrant_register_sent_total", kind="auth") == 1
    assert value(samples, "uac_registrant_register_sent_total", kind="unregister") == 1
    assert value(samples, "uac_registrant_register_sent_total", kind="retry") == 0
    assert value(samples, "uac_registrant_replies_total", **{"class": "2xx", "code": "200"}) == 2
    assert value(samples, "uac_registrant_replies_total", **{"class": "4xx", "code": "401"}) == 1
    assert value(samples, "uac_registrant_replies_total", **{"class": "5xx", "code": "503"}) == 1
    assert value(samples, "uac_registrant_auth_failures_total") == 1
    assert value(samples, "uac_registrant_rows_skipped_total") == 4
    assert value(samples, "uac_registrant_rate_limited_total") == 1


def test_unknown_register_kind_is_refused():
    with pytest.raises(ValueError):
        Metrics().register_sent("bogus")


@pytest_twisted.ensureDeferred
async def test_mi_calls_counted_through_on_call(scraped):
    base, _, _ = scraped
    for method in ("reg_reload", "reg_reload", "which", "nope"):
        response = await treq.post(
            base + "/mi",
            json={"jsonrpc": "2.0", "id": "1", "method": method, "params": {}},
            persistent=False,
        )
        await treq.content(response)
    samples = await scrape(base)
    assert value(samples, "uac_registrant_mi_calls_total", method="reg_reload", result="ok") == 2
    assert value(samples, "uac_registrant_mi_calls_total", method="which", result="ok") == 1
    assert value(samples, "uac_registrant_mi_calls_total", method="<unknown>", result="error") == 1
    assert not any(name == "uac_registrant_mi_calls_total" and ("method", "nope") in labels for name, labels in samples)


def test_without_sources_the_mirrored_series_are_zero():
    text = Metrics().render().decode()
    samples = {
        s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels
    }
    assert samples["uac_registrant_retransmissions_total"] == 0
    assert samples["uac_registrant_transaction_timeouts_total"] == 0


def test_requests_are_counted_by_destination():
    from prometheus_client.parser import text_string_to_metric_families

    from uacregistrant.mi.metrics import Metrics
    from uacregistrant.transport.listen import Destination

    metrics = Metrics()
    a = Destination("udp", "127.0.0.1", 5060)
    b = Destination("tls", "::1", 5061, server_name="registrar.example.test")
    for destination in (a, a, b):
        metrics.destination(destination)
    samples = {
        sample.labels["destination"]: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name == "uac_registrant_destination_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert samples == {"udp:127.0.0.1:5060": 2.0, "tls:[::1]:5061": 1.0}
