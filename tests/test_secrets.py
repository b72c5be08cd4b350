"""Secrets stay secret: with every logger at DEBUG (ours and the Kafka clients'), neither the SASL
password nor the client key's password (nor a recognisable part of either) appears in a repr, a
log record, an error or ``last_error`` — during a refused SCRAM login, a key that cannot be opened,
and a SASL/PLAIN handshake. Both transports; the endpoints are ``tls_tansu.py``'s.

Tansu offers no SASL/PLAIN, so the PLAIN case runs against a small front that accepts the PLAIN
handshake (everything else goes to Tansu) and notes when the client has sent its credentials.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MakeClient, assert_refused, build, capture_everything, everything_logged, free_port, shown, track
from pki import HOST, KEY_PASSWORD
from tls_tansu import (
    ATTEMPT_TIMEOUT_S,
    CLOSE_TIMEOUT_S,
    SASL_PASSWORD,
    STARTUP_TIMEOUT_S,
    TlsKafka,
    answers_kafka,
    sasl_ssl_options,
    spawn_tansu,
    stop_process,
)

import sentinel_durable as sentinel
from sentinel_durable.testing import wait_until

pytestmark = pytest.mark.usefixtures("flushers_end_after_the_test")


@pytest.mark.broker
@pytest.mark.parametrize("failure", ["SCRAM login refused", "wrong key password"])
def test_secrets_never_appear_in_repr_logs_or_errors(
    failure: str, sasl_kafka: TlsKafka, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    key_password = KEY_PASSWORD if failure == "SCRAM login refused" else f"wrong-{KEY_PASSWORD}"
    options = sasl_ssl_options(sasl_kafka, "SCRAM-SHA-512") | {"ssl_password": key_password}
    client = make_client(sasl_kafka.bootstrap_servers, **options, write_timeout=ATTEMPT_TIMEOUT_S)
    said = [repr(client), repr(client.config), str(client.config), client.config.model_dump_json()]

    track(client, 3)
    with pytest.raises(sentinel.SentinelError) as waited:  # DeliveryTimeoutError or BrokerConnectionError
        client.send(build(), wait=True, timeout=ATTEMPT_TIMEOUT_S)
    said.append(shown(waited.value))
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
    tansu_port = free_port()
    front = PlainSaslFront(tansu_port)
    tansu = spawn_tansu(tmp_path, tansu_port, advertised_port=front.port)
    try:
        wait_until(lambda: answers_kafka(tansu_port, None), STARTUP_TIMEOUT_S, description="tansu")
        yield front
    finally:
        front.close()
        stop_process(tansu)


@pytest.mark.broker
def test_the_plain_password_never_appears_in_debug_logs(
    plain_sasl_front: PlainSaslFront,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_everything(caplog)
    client = make_client(
        f"{HOST}:{plain_sasl_front.port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password=SASL_PASSWORD,
        write_timeout=ATTEMPT_TIMEOUT_S,
    )
    track(client, 1)
    assert plain_sasl_front.credentials_sent.wait(15), "the client never sent its PLAIN credentials"
    client.close(timeout=CLOSE_TIMEOUT_S)
    assert SASL_PASSWORD not in everything_logged(caplog)
