"""Fixtures shared by the suites, and the choice of broker they run against.

``pytest`` (``make test``) runs everything against Tansu, the embedded broker. ``pytest
--broker=apache-kafka`` (``make test-kafka``) runs the integration suites that take the
``broker`` fixture — client, CLI, chaos — against one Apache Kafka broker (KRaft, logs on disk,
``tests/apache_kafka/launcher.py``) behind the same kind of TCP proxy, and collects the tests
that only a real Apache Kafka can run (``tests/apache_kafka/``). Without Java or Maven that run
stops at once with one line naming what is missing; it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest
import pytest_asyncio

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker, wait_until

if TYPE_CHECKING:
    from sentinel_durable.event import EventRules

APACHE_KAFKA = "apache-kafka"
#: What the clients the suites make have unless a test says otherwise: quick retries, and a
#: write_timeout that a slow machine meets.
QUICK_RETRIES: dict[str, Any] = {"retry_backoff": 0.05, "max_retry_backoff": 0.5, "write_timeout": 5.0}
#: Kills per chaos run unless SENTINEL_CHAOS_ROUNDS says otherwise (the CI budget).
DEFAULT_ROUNDS = 6

#: The chaos suites' report lines, printed in the terminal summary (collected from the tests' reports).
_CHAOS = "chaos"
_chaos_lines: list[str] = []

#: The fixtures of the TLS and SASL endpoints live beside the endpoints; those of the LLM integrations in genai_helpers.
pytest_plugins = ["tls_tansu", "genai_helpers"]

_T = TypeVar("_T")


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


# --- events: fields, the builder, track ---------------------------------------------------------


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


def complete_builder(rules: sentinel.Config | EventRules | None = None) -> sentinel.EventBuilder:
    """An EventBuilder given every field of ``valid_fields``: ``.build()`` succeeds."""
    return (
        sentinel.EventBuilder(rules).service("svc").model("gpt-4").prompt("What is the capital of France?", 8)
        .response("Paris.", 7, "stop").latency(150.5).cost(0.001)
    )  # fmt: skip


def build(n: int = 0) -> sentinel.TelemetryEvent:
    """The ``n``-th small valid event (its prompt ``prompt n``), built."""
    return complete_builder().prompt(f"prompt {n}", 8).build()


def event_of_record_size(
    target: int, grown: Callable[[int], sentinel.EventBuilder] | None = None
) -> sentinel.TelemetryEvent:
    """An event whose Kafka record (value, key, headers and framing, as estimated) is exactly ``target`` bytes:
    ``grown(n)``'s, a builder with ``n`` bytes of metadata (by default ``complete_builder``'s, with room up to
    8 MiB), ``n`` chosen to fit."""
    from sentinel_durable.records import record_size  # the send-time estimate (private: imported where used)

    def complete_with(metadata_bytes: int) -> sentinel.EventBuilder:
        return complete_builder(sentinel.Config(max_message_bytes=8 << 20)).metadata({"blob": "x" * metadata_bytes})

    grow = grown or complete_with
    base = grow(0).build()
    event = grow(target - record_size(len(base.to_json()), base.service_name, base.model)).build()
    assert record_size(len(event.to_json()), event.service_name, event.model) == target
    return event


def track_fields(n: int = 0, service: str = "svc", **fields: Any) -> dict[str, Any]:
    """The arguments of ``track`` for the ``n``-th small valid event, with ``fields`` applied."""
    return {
        "service": service, "model": "gpt-4", "prompt": f"prompt {n}", "response": "Paris.", "latency_ms": 150.5,
        "prompt_tokens": 8, "completion_tokens": 7, "cost_usd": 0.001,
    } | fields  # fmt: skip


def track(client: sentinel.Client, count: int = 1, service: str = "svc", **fields: Any) -> list[str]:
    """``client.track`` of ``count`` small valid events; their event ids, in order."""
    return [client.track(**track_fields(n, service, **fields)) for n in range(count)]


def event_ids(records: Iterable[Any]) -> list[str]:
    """The event ids of records read from a topic, in the topic's order."""
    return [json.loads(record.value)["event_id"] for record in records]


# --- clients ---------------------------------------------------------------------------------------

MakeClient = Callable[..., sentinel.Client]


def offline_client(spool_dir: Path, topic: str = "offline", **options: Any) -> sentinel.Client:
    """A client whose broker refuses every connection: all it is given stays in ``spool_dir``."""
    return sentinel.Client(brokers=[f"127.0.0.1:{free_port()}"], topic=topic, spool_dir=spool_dir, **options)


def pending(client: sentinel.Client) -> int:
    """The events the client still holds: spooled or in flight (one snapshot: a claim moves them between)."""
    stats = client.stats()
    return stats.spooled + stats.in_flight


def assert_refused(client: sentinel.Client, pending: int) -> sentinel.Stats:
    """The client tried (a delivery attempt failed), delivered nothing, and keeps every event."""
    wait_until(lambda: client.stats().last_error, 15, description="a failed delivery attempt")
    assert not client.flush(timeout=0.1)
    stats = client.stats()
    assert stats.delivered == 0
    assert stats.spooled + stats.in_flight == pending
    return stats


# --- the command line and other processes ------------------------------------------------------

#: ``sentinel-durable`` as a subprocess.
CLI = [sys.executable, "-m", "sentinel_durable.cli"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``sentinel-durable *argv`` run in this process: its exit code, stdout and stderr."""
    from sentinel_durable.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` (dedented) run by a new Python interpreter: what a fresh process imports and does."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


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
    if request.param == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        pytest.fail("confluent-kafka is not installed: pip install -e '.[dev]'")
    return str(request.param)


@pytest.fixture
def make_client(spool_dir: Path, topic: str, transport: str) -> Iterator[MakeClient]:
    """``make_client(brokers, topic=<the test's topic>, **options)``: a client of the test's transport and
    spool directory, with ``QUICK_RETRIES``; ``brokers`` is one address or a list. Every one made is closed
    at the end of the test (all of them, even if one fails)."""
    with contextlib.ExitStack() as closing:

        def make(brokers: str | list[str], topic: str = topic, **options: Any) -> sentinel.Client:
            addresses = [brokers] if isinstance(brokers, str) else list(brokers)
            settings = {"transport": transport, "spool_dir": spool_dir, **QUICK_RETRIES} | options
            client = sentinel.Client(brokers=addresses, topic=topic, **settings)
            closing.callback(client.close, timeout=2)
            return client

        yield make


@pytest_asyncio.fixture
async def make_async_client(spool_dir: Path, topic: str) -> AsyncIterator[Callable[..., sentinel.AsyncClient]]:
    """``make_async_client(brokers, **options)``: ``make_client``'s counterpart for AsyncClient (one
    transport, the default); every one made is closed at the end of the test."""
    clients: list[sentinel.AsyncClient] = []

    def make(brokers: str, **options: Any) -> sentinel.AsyncClient:
        settings = {"spool_dir": spool_dir, **QUICK_RETRIES} | options
        clients.append(sentinel.AsyncClient(brokers=[brokers], topic=topic, **settings))
        return clients[-1]

    yield make
    for client in clients:
        await client.close(timeout=1)


@pytest.fixture
def client(broker: BrokerUnderTest, topic: str, spool_dir: Path) -> Iterator[sentinel.Client]:
    """A client of the test's broker, topic and spool directory, with the default options; closed after the test."""
    with sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir) as made:
        yield made


@pytest.fixture
def offline(spool_dir: Path) -> Iterator[sentinel.Client]:
    """An ``offline_client`` spooling in the test's ``spool_dir``, closed at the end of the test."""
    client = offline_client(spool_dir)
    try:
        yield client
    finally:
        client.close(timeout=0)


@pytest.fixture
def no_topic_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SENTINEL_TOPIC from the caller's environment, for tests of which topic a spool file records."""
    monkeypatch.delenv("SENTINEL_TOPIC", raising=False)


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
    """``report(line)``: print ``line`` in the terminal summary at the end of the run. The line travels
    in the test's report (``user_properties``), so that under pytest-xdist it reaches the controller,
    which prints the summary."""
    return lambda line: request.node.user_properties.append((_CHAOS, line))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":  # the test's properties, whole, once per test
        _chaos_lines.extend(str(value) for name, value in report.user_properties if name == _CHAOS)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = _chaos_lines
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)


# --- threads and deadlines -------------------------------------------------------------------------


def returns_within(seconds: float, call: Callable[[], _T], description: str) -> _T:
    """``call()`` made on a thread of its own and waited for (``wait_until``) at most ``seconds``: what it
    returns, or what it raises. A call still running then fails the test with a TimeoutError naming
    ``description`` (and is left to end on its daemon thread).

    For calls whose promise is to return soon (``close(timeout)`` with no broker, a refused timeout):
    ``seconds`` is well above what the call takes and well below the wait it must not make, so that a
    loaded machine does not fail the test and a call that waits does."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    threading.Thread(target=run, name="test-returns-within", daemon=True).start()
    wait_until(lambda: outcome, seconds, description=description)
    returned, value = outcome[0]
    if not returned:
        raise value
    return value  # type: ignore[no-any-return]


async def wait_until_async(condition: Callable[[], _T], timeout: float, description: str = "condition") -> _T:
    """``wait_until`` for a coroutine: poll ``condition`` between awaits (the loop runs meanwhile) until it
    holds, for at most ``timeout`` seconds; then a TimeoutError naming ``description``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        if loop.time() >= deadline:
            raise TimeoutError(f"{description}: not met within {timeout:g} s")
        await asyncio.sleep(0.01)
    return value


def _flusher_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "sentinel-durable-flusher"}


@pytest.fixture
def flushers_end_after_the_test() -> Iterator[None]:
    """After the test, wait until the flusher threads it started have ended.

    close() returns on time even while a broker call hangs; the flusher thread ends once that call
    does (write_timeout). Waiting for it keeps its log records out of the next test. Use it with
    ``pytest.mark.usefixtures``: it is then set up before ``make_client``, and ends after its clients are closed.
    """
    before = _flusher_threads()
    yield
    wait_until(lambda: not (_flusher_threads() - before), 15, description="the clients' flusher threads to end")


# --- what a user sees: errors and log records ------------------------------------------------------


def capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every record at DEBUG: the root logger's, ours and the Kafka clients'.

    The named loggers too, because their levels may have been raised by whoever ran before
    (the CLI quiets ``kafka`` to CRITICAL); ``caplog`` puts every level back after the test.
    """
    for name in (None, "kafka", "sentinel_durable"):
        caplog.set_level(logging.DEBUG, logger=name)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record, formatted and raw (message, arguments, exception and its chain)."""
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info and record.exc_info[1] is not None:
            parts += traceback.format_exception(record.exc_info[1])
    return "\n".join(parts)


def shown(error: BaseException) -> str:
    """Everything a user sees of an exception: str and repr of it and of each exception chained to it,
    their notes, and the formatted traceback."""
    parts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current)]
        for note in getattr(current, "__notes__", []):
            parts.append(str(note))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
