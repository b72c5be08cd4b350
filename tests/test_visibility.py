"""An operator sees an outage when it happens (issue 12, points 8 and 10), and every timeout
means one thing (point 11).

Timing targets are checked as deadlines on conditions: a refused connection shows in
``stats()`` within 2 s of the first attempt, a broker that says nothing within
``write_timeout`` + 1 s; the recovery shows by the time the first ack is reported (the target:
within 1 s of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerUnderTest, build, returns_within, track
from spool_helpers import drain_all

import sentinel_durable as sentinel
import sentinel_durable.flusher as flusher_module
from sentinel_durable.testing import EmbeddedBroker, wait_until


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """An address that accepts TCP connections and never says a word (a black hole)."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(100)
        yield f"127.0.0.1:{hole.getsockname()[1]}"


class AcksSeen:
    """An ``on_delivery`` hook noting what ``stats()`` says of the broker as each batch is acked: the
    recovery counts from the first ack after the outage."""

    def __init__(self) -> None:
        self.client: sentinel.Client | None = None  # set once the client it is the hook of exists
        self.connected: list[bool | None] = []

    def __call__(self, event_ids: list[str]) -> None:
        assert self.client is not None
        self.connected.append(self.client.stats().broker_connected)

    def clear(self) -> None:
        self.connected.clear()

    def assert_recovery_shown_by_the_first_ack(self) -> None:
        wait_until(lambda: self.connected, 60, description="the first ack after the outage")
        assert self.connected[0] is True, "stats() did not show the recovery when the first ack was reported"


# --- point 8: the outage shows when it happens --------------------------------------------------------


def test_refused_connection_shows_in_stats_within_2s(make_client: Any, refused_broker: str) -> None:
    address = refused_broker
    client = make_client(address, write_timeout=10)
    track(client)  # the first attempt starts now
    wait_until(lambda: client.stats().broker_connected is False, 2.0, description="stats() to show the refusal")
    last_error = client.stats().last_error or ""
    assert address in last_error, last_error
    assert "refused" in last_error.lower(), last_error


def test_silent_broker_shows_in_stats_within_write_timeout_plus_1s(make_client: Any, silent_broker: str) -> None:
    client = make_client(silent_broker, write_timeout=3)
    track(client)
    wait_until(lambda: client.stats().broker_connected is False, 3 + 1, description="stats() to show the silent broker")
    assert silent_broker in (client.stats().last_error or "")


def test_cut_shows_at_once_and_the_first_ack_ends_it(
    broker: BrokerUnderTest, make_client: Any, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The edge app's case: connected, then the network is cut while events keep coming."""
    assert broker.proxy is not None
    acks = AcksSeen()
    client = acks.client = make_client(broker.bootstrap_servers, write_timeout=10, on_delivery=acks)
    track(client)
    assert client.flush(timeout=30)
    assert client.stats().broker_connected is True
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        acks.clear()
        broker.proxy.cut()
        track(client, 5)
        wait_until(lambda: client.stats().broker_connected is False, 2.0, description="stats() to show the cut")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]  # logged as the outage starts
        assert broker.bootstrap_servers in warnings[0].getMessage()
        broker.proxy.restore()
        acks.assert_recovery_shown_by_the_first_ack()
        assert client.stats().last_error is None  # cleared once the outage is over
        assert client.flush(timeout=30)
    ours = [r for r in caplog.records if r.name.startswith("sentinel_durable")]
    warnings = [r for r in ours if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    recoveries = [r for r in ours if r.levelno == logging.INFO and "reachable again" in r.getMessage()]
    assert (len(warnings), len(recoveries)) == (1, 1), [r.getMessage() for r in ours]
    assert warnings[0].created < recoveries[0].created


def test_silent_cut_shows_within_write_timeout_plus_1s_and_the_first_ack_ends_it(
    make_client: Any, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Connected, then the broker stops answering on its open connections (SIGSTOP: the kernel
    still accepts new ones), and answers again (SIGCONT)."""
    with EmbeddedBroker(with_proxy=True) as broker:
        assert broker.pid is not None
        acks = AcksSeen()
        client = acks.client = make_client(broker.bootstrap_servers, write_timeout=3, on_delivery=acks)
        track(client)
        assert client.flush(timeout=30)
        with caplog.at_level(logging.INFO, logger="sentinel_durable"):
            acks.clear()
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                track(client, 5)
                wait_until(lambda: client.stats().broker_connected is False, 3 + 1, description="the cut in stats()")
                warnings = [
                    r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()
                ]
                assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
                assert broker.bootstrap_servers in (client.stats().last_error or "")
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            acks.assert_recovery_shown_by_the_first_ack()
            broker.read_topic(topic, expected=2, timeout=60)
            assert client.flush(timeout=30)


def test_wait_on_a_refused_broker_is_a_delivery_timeout_caused_by_the_connection(
    make_client: Any, refused_broker: str
) -> None:
    address = refused_broker
    client = make_client(address, write_timeout=10)
    with pytest.raises(sentinel.DeliveryTimeoutError) as caught:
        client.send(build(), wait=True, timeout=3)  # the first send: the outage is found during the wait
    cause = caught.value.__cause__
    assert isinstance(cause, sentinel.BrokerConnectionError), repr(cause)
    assert cause.brokers == [address]
    assert "refused" in str(cause).lower()
    assert "no broker reachable" in str(caught.value)
    # DESIGN's contract: a wait that fails because no broker is reachable is a BrokerConnectionError.
    assert isinstance(caught.value, sentinel.BrokerUnreachableError)
    assert isinstance(caught.value, sentinel.BrokerConnectionError)
    assert caught.value.brokers == [address]
    with pytest.raises(sentinel.DeliveryTimeoutError) as again:  # and the same once it is known
        client.send(build(), wait=True, timeout=0.5)
    assert isinstance(again.value.__cause__, sentinel.BrokerConnectionError)


def test_wait_on_a_silent_broker_is_a_delivery_timeout_caused_by_the_connection_once_known(
    make_client: Any, silent_broker: str
) -> None:
    client = make_client(silent_broker, write_timeout=1)
    with pytest.raises(sentinel.DeliveryTimeoutError) as caught:
        client.send(build(), wait=True, timeout=3)
    assert isinstance(caught.value.__cause__, sentinel.BrokerConnectionError), repr(caught.value.__cause__)
    assert isinstance(caught.value, sentinel.BrokerConnectionError)


# --- point 10: one WARNING, no flood from the Kafka libraries ---------------------------------------------

OFFLINE_SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading
    logging.basicConfig(level=logging.WARNING)
    import sentinel_durable as sentinel

    brokers, spool_dir, transport, seconds, library_logs, mode = sys.argv[1:7]
    client = sentinel.Client(brokers=[brokers], topic="t", spool_dir=spool_dir, transport=transport,
                             retry_backoff=0.05, max_retry_backoff=0.5, write_timeout=2,
                             client_library_logs=library_logs == "on")
    client.track(service="s", model="m", prompt="p", response="r", latency_ms=1)
    if mode == "cut":
        assert client.flush(timeout=30)
        print("connected", flush=True)
        sys.stdin.readline()  # the test has cut the network
        client.track(service="s", model="m", prompt="p", response="r", latency_ms=1)
    threading.Event().wait(float(seconds))
    client.close(timeout=1)
    """
)


def run_offline(brokers: str, spool_dir: Path, transport: str, seconds: float, library_logs: bool,
                proxy: Any = None) -> list[str]:  # fmt: skip
    """Run OFFLINE_SCRIPT; with ``proxy``, it connects first, then the proxy is cut. Its stderr lines."""
    process = subprocess.Popen(
        [sys.executable, "-c", OFFLINE_SCRIPT, brokers, str(spool_dir), transport, str(seconds),
         "on" if library_logs else "off", "offline" if proxy is None else "cut"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        if proxy is not None:
            assert process.stdout is not None
            assert process.stdin is not None
            assert process.stdout.readline() == "connected\n"
            proxy.cut()
            process.stdin.write("go\n")
            process.stdin.flush()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    return [line for line in stderr.splitlines() if line.strip()]


def library_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if ":kafka" in line or "librdkafka" in line]


def test_offline_script_logs_one_warning_and_nothing_from_the_kafka_library(
    transport: str, tmp_path: Path, refused_broker: str
) -> None:
    lines = run_offline(refused_broker, tmp_path, transport, 3, library_logs=False)
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("WARNING:sentinel_durable"), lines
    assert "unreachable" in lines[0]


def test_cut_after_connecting_logs_one_warning_and_nothing_from_the_kafka_library(
    broker: BrokerUnderTest, transport: str, tmp_path: Path
) -> None:
    lines = run_offline(broker.bootstrap_servers, tmp_path, transport, 3, library_logs=False, proxy=broker.proxy)
    assert library_lines(lines) == [], "\n".join(lines)
    ours = [line for line in lines if line.startswith("WARNING:sentinel_durable")]
    assert len(ours) == 1, "\n".join(lines)
    assert len(lines) == 1, "\n".join(lines)


def test_client_library_logs_lets_the_library_lines_through(
    broker: BrokerUnderTest, transport: str, tmp_path: Path
) -> None:
    lines = run_offline(broker.bootstrap_servers, tmp_path, transport, 3, library_logs=True, proxy=broker.proxy)
    assert library_lines(lines), "\n".join(lines)


def test_client_library_logs_has_an_environment_variable() -> None:
    assert sentinel.Config.from_env({"SENTINEL_CLIENT_LIBRARY_LOGS": "true"}).client_library_logs is True
    assert sentinel.Config().client_library_logs is False


def test_the_applications_own_kafka_python_logs_are_untouched() -> None:
    """Our filter keeps out the lines of our connections only: the application's own kafka-python
    client (another thread, another client id) logs as it did."""
    import sentinel_durable.transports.kafka_python  # noqa: F401  (installs the filters)

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(logging.WARNING)
    kafka_logger = logging.getLogger("kafka.net.manager")
    kafka_logger.addHandler(handler)
    level = kafka_logger.level
    kafka_logger.setLevel(logging.WARNING)  # the application's own choice, whatever ran before
    try:
        thread = threading.Thread(target=kafka_logger.warning, args=("the application's own line",), name="app")
        thread.start()
        thread.join()
    finally:
        kafka_logger.removeHandler(handler)
        kafka_logger.setLevel(level)
    assert [r.getMessage() for r in seen] == ["the application's own line"]


# --- point 11: timeouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, -1.0, -0.001])
def test_nan_or_negative_timeouts_are_a_value_error_naming_the_parameter(
    make_client: Any, refused_broker: str, bad: float
) -> None:
    client = make_client(refused_broker, transport="kafka-python")
    calls = {
        "flush": lambda: client.flush(timeout=bad),
        "send": lambda: client.send(build(), wait=True, timeout=bad),
        "close": lambda: client.close(timeout=bad),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="timeout") as caught:
            returns_within(10, call, f"{name}(timeout={bad}) to be refused")  # at once, never a wait
        assert "NaN" in str(caught.value) or "negative" in str(caught.value), str(caught.value)
    assert not client.closed  # a refused close() closes nothing
    assert client.stats().spooled == 0  # and a refused send() spools nothing


def test_none_timeout_means_no_limit(broker: BrokerUnderTest, make_client: Any) -> None:
    client = make_client(broker.bootstrap_servers)
    track(client, 3)
    assert client.flush(timeout=None) is True
    event = build()
    assert client.send(event, wait=True, timeout=None) == event.event_id
    client.close(timeout=None)
    assert client.closed


def test_async_client_timeouts_follow_the_same_rule(broker: BrokerUnderTest, spool_dir: Path, topic: str) -> None:
    async def scenario() -> None:
        async with sentinel.AsyncClient(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir) as aio:
            for bad in (math.nan, -1.0):
                with pytest.raises(ValueError, match="timeout"):
                    await aio.flush(timeout=bad)
                with pytest.raises(ValueError, match="timeout"):
                    await aio.send(build(), wait=True, timeout=bad)
                with pytest.raises(ValueError, match="timeout"):
                    await aio.close(timeout=bad)
            event = build()
            assert await aio.send(event, wait=True, timeout=None) == event.event_id
            assert await aio.flush(timeout=None) is True
            await aio.close(timeout=None)
            assert aio.closed

    asyncio.run(scenario())


def test_shutdown_timeout_none_is_no_limit_and_nan_is_refused() -> None:
    assert sentinel.Config(shutdown_timeout=None).shutdown_timeout is None
    for bad in (math.nan, -1):
        with pytest.raises(sentinel.ConfigError, match="shutdown_timeout"):
            sentinel.Config(shutdown_timeout=bad)


def test_close_with_the_broker_known_unreachable_returns_at_once_and_keeps_the_events(
    make_client: Any, refused_broker: str, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(refused_broker, write_timeout=10)
    sent = track(client, 50)
    wait_until(lambda: client.stats().broker_connected is False, 10, description="the outage")
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        # It spends neither its timeout (60 s) nor a delivery attempt's (write_timeout, 10 s).
        returns_within(5, lambda: client.close(timeout=60), "close(timeout=60) with the broker known unreachable")
    lines = [r.getMessage() for r in caplog.records if "for the next start" in r.getMessage()]
    assert lines == [f"closed with Kafka unreachable ({client.config.brokers[0]}): 50 events stay in the spool"
                     " for the next start"], lines  # fmt: skip
    assert {event["event_id"] for event in drain_all(spool_dir)} == set(sent)


# --- round 2: a waiter always ends, a stale outage is checked, probes are bounded -------------------------


class WaitingSend:
    """``client.send(event, wait=True, timeout=None)`` on a thread of its own; what it raised."""

    def __init__(self, client: sentinel.Client) -> None:
        self.event = build()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client,), name="test-waiting-send", daemon=True)
        self.thread.start()

    def _run(self, client: sentinel.Client) -> None:
        try:
            client.send(self.event, wait=True, timeout=None)
        except BaseException as exc:
            self.error = exc

    def ended_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return not self.thread.is_alive()


def test_close_ends_a_send_waiting_without_limit(make_client: Any, refused_broker: str, spool_dir: Path) -> None:
    client = make_client(refused_broker, write_timeout=10)
    waiting = WaitingSend(client)
    wait_until(lambda: client.stats().broker_connected is False, 10, description="the outage")
    client.close(timeout=2)
    assert waiting.ended_within(5), "send(wait=True, timeout=None) still waits after close()"
    assert isinstance(waiting.error, sentinel.ClientClosedError), repr(waiting.error)
    assert "stays in the spool" in str(waiting.error)
    assert [event["event_id"] for event in drain_all(spool_dir)] == [waiting.event.event_id]  # kept on disk


def test_close_ends_an_async_send_waiting_without_limit(refused_broker: str, spool_dir: Path, topic: str) -> None:
    async def scenario() -> BaseException | None:
        aio = sentinel.AsyncClient(brokers=[refused_broker], topic=topic, spool_dir=spool_dir, write_timeout=10,
                                   retry_backoff=0.05, max_retry_backoff=0.5)  # fmt: skip
        await aio.open()
        sending = asyncio.ensure_future(aio.send(build(), wait=True, timeout=None))

        async def outage_known() -> None:
            while (await aio.stats()).broker_connected is not False:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(outage_known(), 10)  # the outage shows
        await aio.close(timeout=2)
        try:
            await asyncio.wait_for(sending, 5)
        except TimeoutError:
            raise AssertionError("AsyncClient.send(wait=True, timeout=None) still waits after close()") from None
        except Exception as exc:
            return exc
        return None

    error = asyncio.run(scenario())
    assert isinstance(error, sentinel.ClientClosedError), repr(error)
    assert len(drain_all(spool_dir)) == 1


def test_a_send_waiting_for_an_event_dropped_by_drop_oldest_ends_with_spool_full(
    refused_broker: str, spool_dir: Path, topic: str
) -> None:
    client = sentinel.Client(brokers=[refused_broker], topic=topic, spool_dir=spool_dir, overflow="drop_oldest",
                             max_message_bytes=1024, max_spool_bytes=(1024 + (64 << 10)), retry_backoff=0.05,
                             max_retry_backoff=0.5, write_timeout=10)  # fmt: skip
    try:
        waiting = WaitingSend(client)
        wait_until(lambda: client.stats().spooled + client.stats().in_flight == 1, 10, description="the event spooled")

        def dropped() -> bool:
            track(client, 20)  # newer events, until the spool makes room by dropping the oldest
            return waiting.ended_within(0)

        wait_until(dropped, 30, description="the waiting event to be dropped")
        assert isinstance(waiting.error, sentinel.SpoolFullError), repr(waiting.error)
        assert waiting.event.event_id in str(waiting.error)
        assert client.stats().dropped.get("overflow_oldest", 0) > 0
    finally:
        client.close(timeout=1)


def test_a_send_waiting_for_an_event_expired_by_max_event_age_ends_with_a_send_error(
    refused_broker: str, spool_dir: Path, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flusher_module, "HOUSEKEEPING_INTERVAL", 1.0)  # expiry runs with housekeeping
    client = sentinel.Client(brokers=[refused_broker], topic=topic, spool_dir=spool_dir, max_event_age=0.5,
                             retry_backoff=0.05, max_retry_backoff=0.5, write_timeout=10)  # fmt: skip
    try:
        waiting = WaitingSend(client)
        assert waiting.ended_within(30), "send(wait=True, timeout=None) still waits for an expired event"
        assert isinstance(waiting.error, sentinel.SendError), repr(waiting.error)
        assert "max_event_age" in str(waiting.error)
        assert client.stats().dropped.get("expired") == 1
    finally:
        client.close(timeout=1)


def test_close_after_the_broker_came_back_delivers_though_the_outage_was_known(
    broker: BrokerUnderTest, make_client: Any, topic: str, spool_dir: Path
) -> None:
    """The broker is back, but nothing has been acked since the outage began, so the client still
    believes it unreachable (the flusher backs off between attempts): close() checks, and delivers."""
    assert broker.proxy is not None
    client = make_client(broker.bootstrap_servers, write_timeout=3)
    track(client)
    assert client.flush(timeout=30)
    broker.proxy.cut()
    sent = track(client, 20)
    wait_until(lambda: client.stats().broker_connected is False, 10, description="the outage")
    wait_until(lambda: client.stats().retries >= 20, 10, description="the batch to be put back")  # and retried
    broker.proxy.restore()
    assert client.stats().broker_connected is False  # nothing acked since: the flag is stale
    client.close(timeout=15)
    assert client.stats().delivered == 21, client.stats()
    ids = {dict(record.headers)["event_id"].decode() for record in broker.read_topic(topic, expected=21, timeout=30)}
    assert set(sent) <= ids
    assert drain_all(spool_dir) == []


@pytest.fixture
def unanswering_brokers() -> Iterator[list[str]]:
    """Four addresses whose TCP handshake never completes: listeners with a full accept queue drop SYNs."""
    with contextlib.ExitStack() as stack:
        addresses = []
        for _ in range(4):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = listener.getsockname()[1]
            for _ in range(3):  # fill the queue (connections that complete but are never accepted)
                filler = stack.enter_context(socket.socket())
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            addresses.append(f"127.0.0.1:{port}")
        # The queue is full once a further connection gets no answer.
        wait_until(lambda: _connect_times_out(addresses[-1]), 5, description="the accept queues to fill")
        yield addresses


def _connect_times_out(address: str) -> bool:
    host, port = address.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.2).close()
    except TimeoutError:
        return True
    except OSError:
        return False
    return False


def test_a_probe_of_many_brokers_that_never_answer_ends_within_one_probe_timeout(
    unanswering_brokers: list[str],
) -> None:
    """The flusher thread probes while acks are late: four brokers that never answer cost one probe
    timeout, not one each (the probes run at once)."""
    from sentinel_durable.transports.base import probe_brokers

    config = sentinel.Config(brokers=unanswering_brokers, topic="t")
    # 2 s a probe: the four together take 2 s, one after another they would take 8 s.
    outage = returns_within(5, lambda: probe_brokers(config, timeout=2.0), "the probe of four brokers")
    assert outage is not None
    assert all(address in outage for address in unanswering_brokers), outage


def test_closing_the_confluent_transport_reports_no_outage_after_the_close(
    broker: BrokerUnderTest, spool_dir: Path, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka serves its callbacks in the flush that close() makes on the caller's thread: an outage
    it learnt of meanwhile must not reach the flusher's counters or log from there, after the close."""
    assert broker.proxy is not None
    client = sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir,
                             transport="confluent", retry_backoff=0.05, max_retry_backoff=0.5)  # fmt: skip
    track(client)
    assert client.flush(timeout=30)
    with caplog.at_level(logging.DEBUG, logger="sentinel_durable"):
        broker.proxy.cut()  # the idle producer's connections close; librdkafka queues its errors
        wait_until(lambda: broker.proxy.open_connections == 0, 5, description="the connections to close")
        client.close(timeout=3)
    # The outage was not known when close() began: a closed client does not report it afterwards.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [(r.threadName, r.getMessage()) for r in warnings]
    assert client.stats().broker_connected is True  # as it was when the client closed


class _MixedBatch:
    """A batch in which the brokers are away for one record and another fails for a reason of its
    own: a real broker cannot be made to answer so, hence this scripted transport."""

    OUTAGE = "127.0.0.1:1: Connection refused"
    OWN_FAULT = "the record's own fault (an invalid timestamp)"

    def deliver(self, records: Any, timeout: float) -> list[Any]:
        from sentinel_durable.transports import Outcome, RecordResult

        outcomes = [RecordResult(Outcome.RETRY, self.OUTAGE, unreachable=True),
                    RecordResult(Outcome.FAILED, self.OWN_FAULT)]  # fmt: skip
        return [outcomes[index % 2] for index in range(len(records))]

    def close(self, timeout: float) -> None:
        pass


def test_the_outage_warning_names_the_outage_not_another_records_error(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sentinel_durable.flusher import Flusher
    from sentinel_durable.spool import Spool, SpoolRecord

    config = sentinel.Config(brokers=["127.0.0.1:1"], topic="t", spool_dir=spool_dir, retry_backoff=0.05,
                             max_retry_backoff=0.5)  # fmt: skip
    with Spool(spool_dir, topic="t") as spool:
        spool.put_many([SpoolRecord.from_event(build()) for _ in range(2)])
        spool.commit_buffered()
        flusher = Flusher(config, spool, lambda _config, _link: _MixedBatch())
        with caplog.at_level(logging.WARNING, logger="sentinel_durable"):
            flusher.start()
            try:
                wait_until(lambda: flusher.unreachable, 10, description="the outage")
            finally:
                flusher.stop(0)
    (warning,) = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert _MixedBatch.OUTAGE in warning, warning
    assert _MixedBatch.OWN_FAULT not in warning, warning


class CountingForwarder:
    """Forwards TCP connections to ``target`` and counts them: what a broker sees of the probes
    (the client bootstraps through it; the broker's metadata then sends the producer elsewhere)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="test-forwarder", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                return  # closed
            self.accepted += 1
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=self._pump, args=(source, sink), name="test-forwarder-pump", daemon=True)
                pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(5)


def test_late_acks_from_a_broker_that_takes_connections_are_probed_ever_less_often(
    spool_dir: Path, topic: str
) -> None:
    """A broker that is slow (here: stopped, while its kernel still takes connections) is not sent a
    TCP connection every 0.5 s while its acks are late: the probes space out (0.5, 1, 2, 4 s...)."""
    with EmbeddedBroker(with_proxy=True) as broker:
        assert broker.pid is not None
        forwarder = CountingForwarder(broker.bootstrap_servers)
        client = sentinel.Client(brokers=[forwarder.address], topic=topic, spool_dir=spool_dir, write_timeout=6,
                                 transport="kafka-python", retry_backoff=0.05, max_retry_backoff=0.5)  # fmt: skip
        try:
            track(client)
            assert client.flush(timeout=30)
            before, retries = forwarder.accepted, client.stats().retries
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                track(client, 5)
                # One batch waits its whole write_timeout (6 s) for acks, then is put back.
                wait_until(lambda: client.stats().retries >= retries + 5, 20, description="the batch to time out")
                probes = forwarder.accepted - before
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            assert 1 <= probes <= 5, f"{probes} probe connections while one batch's acks were late for 6 s"
        finally:
            client.close(timeout=2)
            forwarder.close()
