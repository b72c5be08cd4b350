"""``Client.stats()`` as Prometheus metrics and OpenTelemetry observable instruments.

    from sentinel_durable.metrics import register_prometheus, register_otel_metrics

    register_prometheus(client)                    # prometheus_client's default REGISTRY
    register_otel_metrics(client)                  # the global OpenTelemetry MeterProvider

Nothing is counted twice: every scrape (Prometheus) or collection (OpenTelemetry) reads
``client.stats()`` once per client and reports what it returns. ``prometheus-client`` and
``opentelemetry-api`` are imported only when these functions are called (extras
``prometheus`` and ``otel``), so ``import sentinel_durable`` never needs them.

Several clients can share a registry or meter provider: one collector (one set of
instruments) per registry (provider) reports every client registered with it, each under its
``topic`` label and, when given, its ``client`` name, so a metric family never appears twice in
an exposition. A registration holds its client weakly; ``Registration.unregister()`` stops
reporting it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from ..client import Client
    from ..stats import Stats

__all__ = ["Registration", "register_otel_metrics", "register_prometheus"]

logger = logging.getLogger(__name__)

#: Drop reasons always reported, at 0 until something is dropped, so that ``rate()`` and
#: ``increase()`` see the first drop. Other reasons appear once they occur.
DROP_REASONS = ("overflow_oldest", "overflow_newest", "expired")

_PREFIX = "sentinel_durable"
#: An OpenTelemetry snapshot older than this is never reused, even by an instrument it did not serve yet.
_SNAPSHOT_REUSE_S = 1.0


@dataclass(frozen=True)
class _Figure:
    """One figure of ``Stats`` as a metric: its name (without prefix or suffix) and how to read it."""

    name: str
    kind: str  # "counter" or "gauge"
    description: str
    unit: str  # the OpenTelemetry unit (UCUM)
    read: Callable[[Stats], float | None]  # None: no value to report now


def _broker_connected(stats: Stats) -> float | None:
    return None if stats.broker_connected is None else float(stats.broker_connected)


_FIGURES = (
    _Figure("delivered", "counter", "Events acked by Kafka since the client started.", "{event}",
            lambda s: s.delivered),
    _Figure("retries", "counter", "Event sends that failed and were retried, since the client started.", "{retry}",
            lambda s: s.retries),
    _Figure("dead_lettered", "counter", "Events moved to the dead-letter table since the client started.", "{event}",
            lambda s: s.dead_lettered),
    _Figure("errors", "counter", "Failures the flusher met (failed sends, callbacks that raised) since the client "
            "started.", "{error}",
            lambda s: s.errors),
    _Figure("capture_errors", "counter", "LLM calls and GenAI spans that instrument() or SentinelSpanExporter could "
            "not make an event of or spool, since the client started (the calls themselves went ahead).", "{call}",
            lambda s: s.capture_errors),
    _Figure("spooled", "gauge", "Events pending in the spool, waiting to be sent.", "{event}",
            lambda s: s.spooled),
    _Figure("in_flight", "gauge", "Events sent to Kafka and waiting for the ack.", "{event}",
            lambda s: s.in_flight),
    _Figure("oldest_pending_age", "gauge", "Age of the oldest pending event in seconds (0 when none is pending).", "s",
            lambda s: s.oldest_pending_age_s or 0.0),
    _Figure("spool_bytes", "gauge", "Bytes the spool files take on disk.", "By",
            lambda s: s.spool_bytes),
    _Figure("broker_connected", "gauge", "1 while a broker is reachable, 0 while none is; absent before the first "
            "attempt.", "1", _broker_connected),
)  # fmt: skip
_DROPPED_DESCRIPTION = "Events dropped from the spool since the client started, by reason."


def _dropped(stats: Stats) -> dict[str, int]:
    return {reason: 0 for reason in DROP_REASONS} | stats.dropped


# -- registrations, shared by both exporters ------------------------------------------------------


class Registration:
    """One client registered with one Prometheus registry or OpenTelemetry meter provider.

    ``unregister()`` stops reporting the client (idempotent). The client is held weakly:
    a registration never keeps a client alive, and a client that is garbage collected
    disappears from the metrics. A closed client reports its final figures.
    """

    def __init__(self, hub: _Hub, client: Client, name: str | None) -> None:
        self._hub = hub
        self._client = weakref.ref(client)
        self.topic = client.config.topic
        self.name = name
        self._logged_failure = False

    @property
    def labels(self) -> dict[str, str]:
        """``{"topic": ...}``, plus ``{"client": name}`` when a name was given."""
        return {"topic": self.topic} if self.name is None else {"topic": self.topic, "client": self.name}

    @property
    def client(self) -> Client | None:
        """The client, or None once it was garbage collected."""
        return self._client()

    def unregister(self) -> None:
        """Stop reporting this client."""
        self._hub.remove(self)

    def read_stats(self) -> Stats | None:
        """The client's stats now, or None when it is gone or its stats cannot be read (logged once)."""
        client = self._client()
        if client is None:
            return None
        try:
            return client.stats()
        except Exception:
            if not self._logged_failure:
                self._logged_failure = True
                logger.warning("could not read the stats of %r for metrics; it is left out", client, exc_info=True)
            return None

    def __repr__(self) -> str:
        return f"<Registration topic={self.topic!r} client={self.name!r}>"


class _Hub:
    """The registrations of one registry or meter provider."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registrations: list[Registration] = []

    def add(self, client: Client, name: str | None) -> Registration:
        registration = Registration(self, client, name)
        with self._lock:
            self._registrations = [r for r in self._registrations if r.client is not None]
            if any(r.labels == registration.labels for r in self._registrations):
                raise ValueError(
                    f"a client with labels {registration.labels} is already registered here;"
                    " give each client a distinct name="
                )
            self._registrations.append(registration)
        return registration

    def remove(self, registration: Registration) -> None:
        with self._lock:
            self._registrations = [r for r in self._registrations if r is not registration]

    def snapshot(self) -> list[tuple[Registration, Stats]]:
        """Every live registration with its client's stats, read once each."""
        with self._lock:
            registrations = list(self._registrations)
        taken = []
        for registration in registrations:
            stats = registration.read_stats()
            if stats is not None:
                taken.append((registration, stats))
        return taken

    def label_names(self) -> list[str]:
        with self._lock:
            named = any(r.name is not None for r in self._registrations)
        return ["topic", "client"] if named else ["topic"]


# -- Prometheus -----------------------------------------------------------------------------------

_prometheus_hubs: weakref.WeakKeyDictionary[CollectorRegistry, _PrometheusCollector] = weakref.WeakKeyDictionary()
_prometheus_lock = threading.Lock()


class _PrometheusCollector:
    """A prometheus_client collector reporting every client of one registry, read on each scrape."""

    def __init__(self) -> None:
        self.hub = _Hub()

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples: the registry checks their names, no stats are read."""
        return self._families([], self.hub.label_names())

    def collect(self) -> Iterator[Metric]:
        return self._families(self.hub.snapshot(), self.hub.label_names())

    @staticmethod
    def _families(taken: list[tuple[Registration, Stats]], label_names: list[str]) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def values(registration: Registration) -> list[str]:
            return [registration.labels.get(label, "") for label in label_names]

        for figure in _FIGURES:
            name = f"{_PREFIX}_{figure.name}"
            family: CounterMetricFamily | GaugeMetricFamily
            if figure.kind == "counter":
                family = CounterMetricFamily(name, figure.description, labels=label_names)
            else:
                unit = "seconds" if figure.unit == "s" else "bytes" if figure.unit == "By" else ""
                family = GaugeMetricFamily(name, figure.description, labels=label_names, unit=unit)
            for registration, stats in taken:
                value = figure.read(stats)
                if value is not None:
                    family.add_metric(values(registration), value)
            yield family
            if figure.name == "dead_lettered":  # keep the counters together
                dropped = CounterMetricFamily(
                    f"{_PREFIX}_dropped", _DROPPED_DESCRIPTION, labels=[*label_names, "reason"]
                )
                for registration, stats in taken:
                    for reason, count in sorted(_dropped(stats).items()):
                        dropped.add_metric([*values(registration), reason], count)
                yield dropped


def register_prometheus(
    client: Client, registry: CollectorRegistry | None = None, name: str | None = None
) -> Registration:
    """Report ``client.stats()`` on every scrape of ``registry`` (default: prometheus_client's ``REGISTRY``).

    Counters: ``sentinel_durable_delivered_total``, ``_retries_total``, ``_dead_lettered_total``,
    ``_dropped_total{reason}``, ``_errors_total``, ``_capture_errors_total``. Gauges: ``sentinel_durable_spooled``,
    ``_in_flight``, ``_oldest_pending_age_seconds``, ``_spool_bytes``, ``_broker_connected``.
    Labels: ``topic``, and ``client`` when ``name`` is given (give one to each of several
    clients of the same topic). Raises ``ValueError`` when a client with the same labels is
    already registered with ``registry``.
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "register_prometheus needs prometheus-client: pip install 'sentinel-durable[prometheus]'"
        ) from exc
    target = prometheus_client.REGISTRY if registry is None else registry
    with _prometheus_lock:
        collector = _prometheus_hubs.get(target)
        if collector is None:
            collector = _PrometheusCollector()
            registration = collector.hub.add(client, name)
            target.register(collector)  # raises if another collector already owns these names
            _prometheus_hubs[target] = collector
            return registration
        return collector.hub.add(client, name)


# -- OpenTelemetry --------------------------------------------------------------------------------

_otel_hubs: weakref.WeakKeyDictionary[MeterProvider, _OtelInstruments] = weakref.WeakKeyDictionary()
_otel_lock = threading.Lock()


class _OtelInstruments:
    """The observable instruments of one meter provider, reporting every client registered with it.

    Each instrument's callback is called separately during a collection; they share one
    snapshot of every client's stats. An instrument that was already served from the current
    snapshot takes a new one, so each collection (by each reader) reads stats once per client;
    a snapshot older than a second is never reused.
    """

    def __init__(self, meter: Meter) -> None:
        self.hub = _Hub()
        self._lock = threading.Lock()
        self._snapshot: list[tuple[Registration, Stats]] = []
        self._served: set[str] = set()
        self._taken_at = 0.0
        for figure in _FIGURES:
            create = meter.create_observable_counter if figure.kind == "counter" else meter.create_observable_gauge
            create(
                f"{_PREFIX}.{figure.name}",
                callbacks=[self._callback(figure.name, figure.read)],
                unit=figure.unit,
                description=figure.description,
            )
        meter.create_observable_counter(
            f"{_PREFIX}.dropped", callbacks=[self._dropped_callback], unit="{event}", description=_DROPPED_DESCRIPTION
        )

    def _taken(self, instrument: str) -> list[tuple[Registration, Stats]]:
        with self._lock:
            now = time.monotonic()
            if not self._served or instrument in self._served or now - self._taken_at > _SNAPSHOT_REUSE_S:
                self._snapshot = self.hub.snapshot()
                self._served = set()
                self._taken_at = now
            self._served.add(instrument)
            return self._snapshot

    def _callback(
        self, instrument: str, read: Callable[[Stats], float | None]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for registration, stats in self._taken(instrument):
                value = read(stats)
                if value is not None:
                    observations.append(Observation(value, registration.labels))
            return observations

        return observe

    def _dropped_callback(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        return [
            Observation(count, registration.labels | {"reason": reason})
            for registration, stats in self._taken("dropped")
            for reason, count in sorted(_dropped(stats).items())
        ]


def register_otel_metrics(
    client: Client, meter_provider: MeterProvider | None = None, name: str | None = None
) -> Registration:
    """Report ``client.stats()`` through OpenTelemetry observable instruments of ``meter_provider``.

    Default provider: the global one (``opentelemetry.metrics.get_meter_provider()``). Meter
    ``sentinel_durable``. Observable counters: ``sentinel_durable.delivered``, ``.retries``,
    ``.dead_lettered``, ``.dropped`` (attribute ``reason``), ``.errors``, ``.capture_errors``. Observable gauges:
    ``sentinel_durable.spooled``, ``.in_flight``, ``.oldest_pending_age`` (s),
    ``.spool_bytes`` (By), ``.broker_connected`` (1/0). Attributes: ``topic``, and ``client``
    when ``name`` is given. Raises ``ValueError`` when a client with the same attributes is
    already registered with the provider.
    """
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ImportError(
            "register_otel_metrics needs opentelemetry-api: pip install 'sentinel-durable[otel]'"
        ) from exc
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    with _otel_lock:
        instruments = _otel_hubs.get(provider)
        if instruments is None:
            instruments = _OtelInstruments(provider.get_meter("sentinel_durable", __version__))
            _otel_hubs[provider] = instruments
    return instruments.hub.add(client, name)
