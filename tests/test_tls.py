"""Events over TLS (stunnel in front of Tansu, ``tls_tansu.py``): the broker's certificate is verified,
a failed handshake delivers nothing and keeps every event on disk, mutual TLS presents the client
certificate and opens its encrypted key. Both transports."""

from __future__ import annotations

import pytest
from conftest import MakeClient, assert_refused, event_ids, track
from pki import Pki
from tls_tansu import ATTEMPT_TIMEOUT_S, CLOSE_TIMEOUT_S, TlsKafka

pytestmark = pytest.mark.usefixtures("flushers_end_after_the_test")


@pytest.mark.broker
def test_events_are_delivered_over_tls_with_the_server_certificate_verified(
    tls_kafka: TlsKafka, make_client: MakeClient
) -> None:
    client = make_client(tls_kafka.bootstrap_servers, **tls_kafka.client_options())
    sent = track(client, 200)
    assert client.flush(timeout=30), client.stats()
    assert set(event_ids(tls_kafka.read_topic(client.config.topic, expected=200))) == set(sent)


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
    refused = make_client(endpoint.bootstrap_servers, **options, write_timeout=ATTEMPT_TIMEOUT_S)
    sent = track(refused, 20)
    assert_refused(refused, 20)
    refused.close(timeout=CLOSE_TIMEOUT_S)

    # The same spool directory, now with the right settings: every event is still there.
    fixed = make_client(tls_kafka.bootstrap_servers, **tls_kafka.client_options())
    assert fixed.flush(timeout=30), fixed.stats()
    assert set(event_ids(tls_kafka.read_topic(fixed.config.topic, expected=20))) == set(sent)


@pytest.mark.broker
def test_mutual_tls_presents_the_client_certificate_with_its_encrypted_key(
    mtls_kafka: TlsKafka, make_client: MakeClient
) -> None:
    client = make_client(mtls_kafka.bootstrap_servers, **mtls_kafka.client_options())
    sent = track(client, 50)
    assert client.flush(timeout=30), client.stats()
    assert set(event_ids(mtls_kafka.read_topic(client.config.topic, expected=50))) == set(sent)


@pytest.mark.broker
def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_kafka: TlsKafka, make_client: MakeClient) -> None:
    client = make_client(
        mtls_kafka.bootstrap_servers, security_protocol="SSL", ssl_cafile=mtls_kafka.pki.ca,
        write_timeout=ATTEMPT_TIMEOUT_S,
    )  # fmt: skip
    track(client, 5)
    assert_refused(client, 5)
