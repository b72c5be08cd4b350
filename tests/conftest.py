"""Fixtures shared by the suites, and the choice of broker they run against.

``pytest`` (``make test``) runs everything against Tansu, the embedded broker. ``pytest
--broker=apache-kafka`` (``make test-kafka``) runs the integration suites that take the
``broker`` fixture — client, CLI, chaos — against one Apache Kafka broker (KRaft, logs on disk,
``tests/apache_kafka/launcher.py``) behind the same kind of TCP proxy, and collects the tests
that only a real Apache Kafka can run (``tests/apache_kafka/``). Without Java or Maven that run
stops at once with one line naming what is missing; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker, wait_until

APACHE_KAFKA = "apache-kafka"
#: Kills per chaos run unless SENTINEL_CHAOS_ROUNDS says otherwise (the CI budget).
DEFAULT_ROUNDS = 6

_report_key = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=["tansu", APACHE_KAFKA],
        default="tansu",
        help="the broker the integration suites run against (apache-kafka needs Java 17+ and Maven)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--broker") == APACHE_KAFKA:
        from apache_kafka.launcher import ToolMissing, kafka_classpath

        try:
            kafka_classpath()  # resolve the jars before any test runs: one failure, not one per test
        except ToolMissing as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    if config.getoption("--broker") != APACHE_KAFKA and "apache_kafka" in collection_path.parts:
        return True  # the Apache Kafka tier runs with --broker=apache-kafka only
    return None


def uses_apache_kafka(config: pytest.Config) -> bool:
    return bool(config.getoption("--broker") == APACHE_KAFKA)


class BrokerUnderTest(Protocol):
    """What the suites use of a broker, whichever one it is."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def proxy(self) -> Any: ...

    def create_topic(self, name: str, partitions: int = 1) -> str: ...

    def read_topic(self, topic: str, expected: int | None = None, timeout: float = 30.0) -> list[Any]: ...


def free_port() -> int:
    """A TCP port nothing listens on now (for an offline client: connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def valid_fields(**overrides: Any) -> dict[str, Any]:
    """The fields of a small valid event, with ``overrides`` applied."""
    fields: dict[str, Any] = {
        "service_name": "svc",
        "model": "gpt-4",
        "prompt": {"text": "What is the capital of France?", "tokens": 8},
        "response": {"text": "Paris.", "tokens": 7, "finish_reason": "stop"},
        "latency_ms": 150.5,
        "cost_usd": 0.001,
    }
    fields.update(overrides)
    return fields


def assert_refused(client: sentinel.Client, pending: int) -> sentinel.Stats:
    """The client tried (a delivery attempt failed), delivered nothing, and keeps every event."""
    wait_until(lambda: client.stats().last_error, 15, description="a failed delivery attempt")
    assert not client.flush(timeout=0.1)
    stats = client.stats()
    assert stats.delivered == 0
    assert stats.spooled + stats.in_flight == pending
    return stats


@pytest.fixture
def fields() -> dict[str, Any]:
    return valid_fields()


@pytest.fixture(scope="session")
def _apache_kafka_with_proxy(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One Apache Kafka broker for the whole run (topics are per test), behind a proxy per node."""
    if not uses_apache_kafka(pytestconfig):
        yield None
        return
    from apache_kafka.launcher import KafkaCluster

    with KafkaCluster(1, workdir=tmp_path_factory.mktemp("kafka"), with_proxy=True) as cluster:
        yield cluster


@pytest.fixture
def broker(pytestconfig: pytest.Config, _apache_kafka_with_proxy: Any) -> Iterator[BrokerUnderTest]:
    """A real broker behind a proxy that can cut the network: Tansu, or Apache Kafka with --broker=apache-kafka."""
    if _apache_kafka_with_proxy is not None:
        try:
            yield _apache_kafka_with_proxy
        finally:
            _apache_kafka_with_proxy.proxy.restore()  # the next test starts with the network up
        return
    with EmbeddedBroker(with_proxy=True) as running:
        yield running


@pytest.fixture
def broker_on_port(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Any]:
    """``with broker_on_port(port) as broker:`` starts a broker on a port clients already know."""
    if not uses_apache_kafka(pytestconfig):
        return lambda port: EmbeddedBroker(port=port)
    from apache_kafka.launcher import KafkaCluster

    def start(port: int) -> contextlib.AbstractContextManager[Any]:
        return KafkaCluster(1, workdir=tmp_path_factory.mktemp("kafka-late"), client_port=port)

    return start


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    return "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:200]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture(params=["kafka-python", "confluent"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test that makes its client with ``make_client`` runs against both transports."""
    return str(request.param)


@pytest.fixture
def make_client(spool_dir: Path, topic: str, transport: str) -> Iterator[Any]:
    """``make_client(brokers, **options)``: a client of the test's transport, spool and topic, with
    quick retries; every one made is closed at the end of the test (all of them, even if one fails)."""
    with contextlib.ExitStack() as closing:

        def make(brokers: str, **options: Any) -> sentinel.Client:
            options.setdefault("transport", transport)
            options.setdefault("spool_dir", spool_dir)
            options.setdefault("retry_backoff", 0.05)
            options.setdefault("max_retry_backoff", 0.5)
            options.setdefault("write_timeout", 5.0)
            client = sentinel.Client(brokers=[brokers], topic=topic, **options)
            closing.callback(client.close, timeout=2)
            return client

        yield make


@pytest.fixture
def refused_broker() -> Iterator[str]:
    """An address that refuses connections for the whole test: a port kept bound, never listening
    (so that no other process can take it meanwhile)."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{bound.getsockname()[1]}"


# --- chaos: kills per run, the seed, and the closing lines -------------------------------------


@pytest.fixture
def chaos_rounds() -> int:
    raw = os.environ.get("SENTINEL_CHAOS_ROUNDS", "").strip()
    rounds = int(raw) if raw else DEFAULT_ROUNDS
    if rounds < 1:
        raise pytest.UsageError(f"SENTINEL_CHAOS_ROUNDS must be at least 1, not {raw!r}")
    return rounds


@pytest.fixture
def chaos_seed() -> int:
    raw = os.environ.get("SENTINEL_CHAOS_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1 << 32)


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``report(line)``: print ``line`` in the terminal summary at the end of the run."""
    lines = request.config.stash.setdefault(_report_key, [])
    return lines.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_report_key, [])
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
