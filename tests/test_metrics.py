"""stats() as Prometheus metrics and OpenTelemetry instruments, against a real broker (Tansu)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import run_python, track
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import sentinel_durable as sentinel
from sentinel_durable.metrics import register_otel_metrics, register_prometheus
from sentinel_durable.testing import EmbeddedBroker, wait_until

pytestmark = pytest.mark.broker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of a scrape, parsed back from the text exposition format."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((f"sentinel_durable_{name}", frozenset(labels.items())))


def otel_values(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (metric.name, frozenset((point.attributes or {}).items())): point.value  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


# --- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_scrape_shows_the_counters_moving(broker: EmbeddedBroker, make_client: Any, topic: str) -> None:
    assert broker.proxy is not None
    client = make_client(broker.bootstrap_servers, topic, write_timeout=1.0)
    registry = CollectorRegistry()
    register_prometheus(client, registry)
    before = scrape(registry)
    assert value(before, "delivered_total", topic=topic) == 0
    assert value(before, "spooled", topic=topic) == 0
    assert value(before, "broker_connected", topic=topic) is None  # unknown before the first attempt

    broker.proxy.cut()
    track(client, 20)
    # The outage shows the moment a probe fails; the failed attempt is counted when its batch settles.
    wait_until(lambda: (lambda s: s.broker_connected is False and s.errors >= 1)(client.stats()), 30,
               description="the outage to be noticed and its failed attempt counted")  # fmt: skip
    during = scrape(registry)
    assert value(during, "spooled", topic=topic) + value(during, "in_flight", topic=topic) == 20  # type: ignore[operator]
    assert value(during, "delivered_total", topic=topic) == 0
    assert value(during, "broker_connected", topic=topic) == 0
    assert value(during, "oldest_pending_age_seconds", topic=topic) > 0  # type: ignore[operator]
    assert value(during, "errors_total", topic=topic) >= 1  # type: ignore[operator]

    broker.proxy.restore()
    assert client.flush(timeout=30)
    after = scrape(registry)
    assert value(after, "delivered_total", topic=topic) == 20
    assert value(after, "spooled", topic=topic) == 0
    assert value(after, "in_flight", topic=topic) == 0
    assert value(after, "oldest_pending_age_seconds", topic=topic) == 0
    assert value(after, "broker_connected", topic=topic) == 1
    assert value(after, "retries_total", topic=topic) >= 1  # type: ignore[operator]
    assert value(after, "spool_bytes", topic=topic) == client.stats().spool_bytes
    assert len(broker.read_topic(topic, expected=20)) >= 20


def test_prometheus_labels_each_client_by_topic_and_name(sentinel_broker: EmbeddedBroker, make_client: Any) -> None:
    first = make_client(sentinel_broker.bootstrap_servers, "metrics-first")
    second = make_client(sentinel_broker.bootstrap_servers, "metrics-second")
    registry = CollectorRegistry()
    register_prometheus(first, registry, name="a")
    register_prometheus(second, registry, name="b")
    track(first, 3)
    track(second, 5)
    assert first.flush(timeout=30)
    assert second.flush(timeout=30)
    samples = scrape(registry)
    assert value(samples, "delivered_total", topic="metrics-first", client="a") == 3
    assert value(samples, "delivered_total", topic="metrics-second", client="b") == 5
    text = generate_latest(registry).decode()
    assert text.count("# TYPE sentinel_durable_delivered_total counter") == 1  # one family, two series


def test_prometheus_refuses_a_second_client_with_the_same_labels(
    sentinel_broker: EmbeddedBroker, make_client: Any
) -> None:
    registry = CollectorRegistry()
    register_prometheus(make_client(sentinel_broker.bootstrap_servers, "same-topic"), registry)
    with pytest.raises(ValueError, match="already registered"):
        register_prometheus(make_client(sentinel_broker.bootstrap_servers, "same-topic"), registry)


def test_prometheus_dropped_total_counts_by_reason(make_client: Any, topic: str) -> None:
    client = make_client(
        "127.0.0.1:1", topic, max_spool_bytes=200_000, max_message_bytes=100_000, overflow="drop_newest"
    )  # no broker; a spool below max_message_bytes + 64 KiB is refused
    registry = CollectorRegistry()
    register_prometheus(client, registry)
    track(client, 1000)
    samples = scrape(registry)
    dropped = client.stats().dropped["overflow_newest"]
    assert dropped > 0
    assert value(samples, "dropped_total", topic=topic, reason="overflow_newest") == dropped
    assert value(samples, "dropped_total", topic=topic, reason="overflow_oldest") == 0
    assert value(samples, "dropped_total", topic=topic, reason="expired") == 0


def test_prometheus_reports_the_final_figures_of_a_closed_client(
    sentinel_broker: EmbeddedBroker, make_client: Any, topic: str
) -> None:
    client = make_client(sentinel_broker.bootstrap_servers, topic)
    registry = CollectorRegistry()
    register_prometheus(client, registry)
    track(client, 4)
    client.close(timeout=10)
    samples = scrape(registry)
    assert value(samples, "delivered_total", topic=topic) == client.stats().delivered == 4
    assert value(samples, "spooled", topic=topic) == 0


def test_prometheus_unregister_stops_reporting_the_client(
    sentinel_broker: EmbeddedBroker, make_client: Any, topic: str
) -> None:
    client = make_client(sentinel_broker.bootstrap_servers, topic)
    registry = CollectorRegistry()
    registration = register_prometheus(client, registry)
    assert value(scrape(registry), "delivered_total", topic=topic) == 0
    registration.unregister()
    assert value(scrape(registry), "delivered_total", topic=topic) is None
    register_prometheus(client, registry)  # the labels are free again
    assert value(scrape(registry), "delivered_total", topic=topic) == 0


# --- OpenTelemetry --------------------------------------------------------------------------------


def test_otel_instruments_report_the_same_figures_as_prometheus(
    sentinel_broker: EmbeddedBroker, make_client: Any, topic: str
) -> None:
    client = make_client(sentinel_broker.bootstrap_servers, topic)
    reader = InMemoryMetricReader()
    register_otel_metrics(client, MeterProvider(metric_readers=[reader]), name="app")
    registry = CollectorRegistry()
    register_prometheus(client, registry, name="app")
    assert (
        otel_values(reader)[("sentinel_durable.delivered", frozenset({"topic": topic, "client": "app"}.items()))] == 0
    )

    track(client, 25)
    assert client.flush(timeout=30)
    observed = otel_values(reader)
    scraped = scrape(registry)
    labels = {"topic": topic, "client": "app"}

    def otel(name: str, **extra: str) -> float:
        return observed[(f"sentinel_durable.{name}", frozenset((labels | extra).items()))]

    assert otel("delivered") == value(scraped, "delivered_total", **labels) == 25
    assert otel("spooled") == value(scraped, "spooled", **labels) == 0
    assert otel("in_flight") == value(scraped, "in_flight", **labels) == 0
    assert otel("oldest_pending_age") == value(scraped, "oldest_pending_age_seconds", **labels) == 0
    assert otel("broker_connected") == value(scraped, "broker_connected", **labels) == 1
    assert otel("spool_bytes") == value(scraped, "spool_bytes", **labels) == client.stats().spool_bytes
    assert otel("retries") == value(scraped, "retries_total", **labels)
    assert otel("dead_lettered") == value(scraped, "dead_lettered_total", **labels) == 0
    assert otel("dropped", reason="overflow_oldest") == 0


def test_capture_errors_of_the_integrations_are_exported_by_both(make_client: Any, topic: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    client = make_client("127.0.0.1:1", topic)  # nothing listens: only the spool is used
    reader = InMemoryMetricReader()
    register_otel_metrics(client, MeterProvider(metric_readers=[reader]))
    registry = CollectorRegistry()
    register_prometheus(client, registry)
    assert value(scrape(registry), "capture_errors_total", topic=topic) == 0
    no_model = TracerProvider().get_tracer("hand").start_span("chat", attributes={"gen_ai.operation.name": "chat"})
    no_model.end()  # a model call with no model: counted, not spooled
    sentinel.SentinelSpanExporter(client).export([no_model, no_model])  # type: ignore[list-item]
    assert client.stats().capture_errors == 2
    assert value(scrape(registry), "capture_errors_total", topic=topic) == 2
    assert otel_values(reader)[("sentinel_durable.capture_errors", frozenset({"topic": topic}.items()))] == 2


def test_otel_collection_reads_stats_once_per_client(
    sentinel_broker: EmbeddedBroker, make_client: Any, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(sentinel_broker.bootstrap_servers, topic)
    reads: list[sentinel.Stats] = []
    original = client.stats

    def counting_stats() -> sentinel.Stats:
        reads.append(original())
        return reads[-1]

    monkeypatch.setattr(client, "stats", counting_stats)
    reader = InMemoryMetricReader()
    register_otel_metrics(client, MeterProvider(metric_readers=[reader]))
    otel_values(reader)
    assert len(reads) == 1
    otel_values(reader)
    assert len(reads) == 2


def test_otel_refuses_a_second_client_with_the_same_attributes(
    sentinel_broker: EmbeddedBroker, make_client: Any
) -> None:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    register_otel_metrics(make_client(sentinel_broker.bootstrap_servers, "same-topic"), provider, name="x")
    with pytest.raises(ValueError, match="already registered"):
        register_otel_metrics(make_client(sentinel_broker.bootstrap_servers, "same-topic"), provider, name="x")


# --- optional dependencies ------------------------------------------------------------------------


def test_importing_the_metrics_module_needs_neither_prometheus_nor_opentelemetry() -> None:
    result = run_python(
        """
        import sys
        import sentinel_durable, sentinel_durable.metrics
        loaded = [name for name in ("prometheus_client", "opentelemetry") if name in sys.modules]
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_register_prometheus_without_the_extra_names_it() -> None:
    result = run_python(
        """
        import sys, tempfile
        sys.modules["prometheus_client"] = None  # as if it were not installed
        import sentinel_durable
        from sentinel_durable.metrics import register_prometheus
        with sentinel_durable.Client(brokers=["127.0.0.1:1"], topic="t", spool_dir=tempfile.mkdtemp()) as client:
            try:
                register_prometheus(client)
            except ImportError as exc:
                print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'sentinel-durable[prometheus]'" in result.stdout
