"""SASL logins against Apache Kafka: PLAIN and SCRAM users of the broker, right and wrong passwords."""

from __future__ import annotations

import pytest
from conftest import MakeClient, build, event_ids, pending, track

import sentinel_durable as sentinel
from apache_kafka.conftest import ALICE, sasl_options
from apache_kafka.launcher import KafkaCluster
from sentinel_durable.testing import wait_until


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_sasl_login_delivers_end_to_end(
    secured: KafkaCluster, make_client: MakeClient, topic: str, mechanism: str
) -> None:
    secured.create_topic(topic, partitions=2)
    secured.allow(f"User:{ALICE}", topic)
    client = make_client(secured.brokers("SASL"), topic, **sasl_options(mechanism))
    sent = track(client, 200)
    assert client.flush(timeout=60), client.stats()
    assert sorted(event_ids(secured.read_topic(topic, expected=200))) == sorted(sent)
    assert client.stats().broker_connected is True


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_a_wrong_password_is_named_and_the_events_wait_for_the_right_one(
    secured: KafkaCluster, make_client: MakeClient, topic: str, mechanism: str
) -> None:
    secured.create_topic(topic)
    secured.allow(f"User:{ALICE}", topic)
    wrong = make_client(secured.brokers("SASL"), topic, **sasl_options(mechanism, password="not-her-password"))
    sent = track(wrong, 30)
    # An attempt that times out before the broker's verdict (a loaded machine) only says "no ack".
    wait_until(lambda: "refused the login" in (wrong.stats().last_error or ""), 90,
               description="the refused login named in last_error")  # fmt: skip
    stats = wrong.stats()
    assert stats.last_error is not None
    assert "not-her-password" not in stats.last_error
    assert (pending(wrong), stats.dead_lettered, stats.delivered) == (30, 0, 0)
    event = build()
    with pytest.raises(sentinel.DeliveryTimeoutError, match="refused the login"):
        wrong.send(event, wait=True, timeout=3)
    wrong.close(timeout=2)

    right = make_client(secured.brokers("SASL"), topic, **sasl_options(mechanism))
    assert right.flush(timeout=60), right.stats()
    assert sorted(event_ids(secured.read_topic(topic, expected=31))) == sorted([*sent, event.event_id])
