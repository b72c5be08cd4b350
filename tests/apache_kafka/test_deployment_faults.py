"""What Apache Kafka refuses, and whose fault the SDK takes it to be.

The deployment's fault (a topic the principal may not write, a topic that does not exist, bad
credentials) refuses every record alike: retried with backoff, reported once at ERROR, never
dead-lettered, delivered once an operator fixes it. The record's fault (too large for the
topic, a timestamp the topic refuses) dead-letters that record alone, with a reason.
"""

from __future__ import annotations

import datetime
import logging
import secrets

import pytest
from conftest import MakeClient, build, complete_builder, event_ids, pending, track

import sentinel_durable as sentinel
from apache_kafka.conftest import ALICE, sasl_options
from apache_kafka.launcher import KafkaCluster
from sentinel_durable.testing import wait_until

#: Failed attempts to wait for before judging that nothing is dead-lettered (max_retries is 2).
ATTEMPTS = 6


def wait_for_retries(client: sentinel.Client, count: int) -> sentinel.Stats:
    retries = client.stats().retries
    wait_until(lambda: client.stats().retries >= retries + count, 60, description=f"{count} more retries")
    return client.stats()


def ours(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("sentinel_durable") and r.levelno == level]


def test_a_topic_denied_by_an_acl_is_retried_and_delivered_once_allowed(
    secured: KafkaCluster, make_client: MakeClient, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    secured.create_topic(topic)
    client = make_client(secured.brokers("SASL"), topic, max_retries=2, **sasl_options())
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        sent = track(client, 20)
        stats = wait_for_retries(client, ATTEMPTS * 20)
        assert stats.dead_lettered == 0
        assert pending(client) == 20
        assert stats.last_error is not None
        assert f"User:{ALICE}" in stats.last_error
        assert repr(topic) in stats.last_error
        secured.allow(f"User:{ALICE}", topic)
        assert client.flush(timeout=60)
    assert sorted(event_ids(secured.read_topic(topic, expected=20))) == sorted(sent)
    errors = [message for message in ours(caplog, logging.ERROR) if "refuses" in message]
    assert len(errors) == 1, ours(caplog, logging.ERROR)
    assert f"User:{ALICE}" in errors[0]
    assert client.stats().dead_lettered == 0


def test_send_and_wait_names_the_denied_topic(secured: KafkaCluster, make_client: MakeClient, topic: str) -> None:
    secured.create_topic(topic)
    client = make_client(secured.brokers("SASL"), topic, **sasl_options())
    track(client, 1)
    wait_until(lambda: client.stats().retries > 0, 30, description="a refused attempt")
    event = build()
    with pytest.raises(sentinel.DeliveryTimeoutError, match="refuses User:alice writes to topic"):
        client.send(event, wait=True, timeout=3)
    assert pending(client) == 2


def test_a_missing_topic_is_retried_and_delivered_once_created(
    secured: KafkaCluster, make_client: MakeClient, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The super user's plaintext listener: authorized for everything, so the topic is simply absent.
    client = make_client(secured.brokers("CLIENT"), topic, max_retries=2, write_timeout=2.0)
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        sent = track(client, 10)
        stats = wait_for_retries(client, ATTEMPTS * 10)
        assert stats.dead_lettered == 0
        assert pending(client) == 10
        assert stats.last_error is not None
        assert "does not exist" in stats.last_error
        assert repr(topic) in stats.last_error
        secured.create_topic(topic, partitions=2)
        assert client.flush(timeout=60)
    assert sorted(event_ids(secured.read_topic(topic, expected=10))) == sorted(sent)
    errors = [message for message in ours(caplog, logging.ERROR) if "does not exist" in message]
    assert len(errors) == 1, ours(caplog, logging.ERROR)
    unreachable = [m for m in ours(caplog, logging.WARNING) if "unreachable" in m]
    assert not unreachable, "a missing topic was reported as an outage"


def test_a_record_too_large_for_the_topic_is_dead_lettered_alone_with_its_size_and_the_limit(
    single: KafkaCluster, make_client: MakeClient, topic: str
) -> None:
    single.create_topic(topic, config={"max.message.bytes": "4000"})
    client = make_client(single.brokers(), topic, max_retries=2)
    before = track(client, 20, prompt="small")
    big = client.track(service="svc", model="gpt-4", prompt=secrets.token_hex(3000), response="r", latency_ms=1)
    after = track(client, 20, prompt="small")
    assert not client.flush(timeout=60)  # one event is dead-lettered, not delivered
    stats = client.stats()
    assert (stats.delivered, stats.dead_lettered, pending(client)) == (40, 1, 0)
    assert sorted(event_ids(single.read_topic(topic, expected=40))) == sorted(before + after)
    assert big not in event_ids(single.read_topic(topic))
    assert stats.last_error is not None
    assert "max.message.bytes=4000" in stats.last_error
    assert "the record is " in stats.last_error


def test_send_and_wait_raises_send_error_for_a_record_the_topic_refuses(
    single: KafkaCluster, make_client: MakeClient, topic: str
) -> None:
    """The topic takes less than max_message_bytes (here 4000 bytes): the send-time check lets the event
    through, Kafka refuses it, and a send that waits for it gets SendError once it is dead-lettered."""
    single.create_topic(topic, config={"max.message.bytes": "4000"})
    client = make_client(single.brokers(), topic, max_retries=1)
    event = (
        sentinel.EventBuilder(client.config).service("svc").model("m").prompt(secrets.token_hex(3000), 1)
        .response("r", 1, "stop").latency(1).build()
    )  # fmt: skip
    with pytest.raises(sentinel.SendError) as caught:
        client.send(event, wait=True, timeout=60)
    assert caught.value.event_id == event.event_id
    assert caught.value.retries == 1


def test_an_event_dated_beyond_the_brokers_future_window_is_dead_lettered_with_kafkas_reason(
    single: KafkaCluster, make_client: MakeClient, topic: str
) -> None:
    """Kafka 4 refuses CreateTime stamps more than message.timestamp.after.max.ms (1 h) ahead."""
    client = make_client(single.brokers(), topic, max_retries=1)
    future = datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC)
    past = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)
    now = datetime.datetime.now(datetime.UTC)
    events = [complete_builder().timestamp(stamp).build() for stamp in (future, past, now)]
    client.send_batch(events)
    assert not client.flush(timeout=60)
    stats = client.stats()
    assert (stats.delivered, stats.dead_lettered) == (2, 1)
    assert stats.last_error is not None
    assert "InvalidTimestamp" in stats.last_error or "INVALID_TIMESTAMP" in stats.last_error
    delivered = single.read_topic(topic, expected=2)
    assert sorted(event_ids(delivered)) == sorted(event.event_id for event in events[1:])
    assert min(record.timestamp for record in delivered) == int(past.timestamp() * 1000)  # year 1 is kept


def test_events_older_than_the_topics_past_window_are_dead_lettered(
    single: KafkaCluster, make_client: MakeClient, topic: str
) -> None:
    """With message.timestamp.before.max.ms set, a backlog older than it is refused record by record."""
    single.create_topic(topic, config={"message.timestamp.before.max.ms": str(24 * 3600 * 1000)})
    client = make_client(single.brokers(), topic, max_retries=1)
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    builder = complete_builder()
    client.send_batch([builder.timestamp(old).build(), builder.timestamp(datetime.datetime.now(datetime.UTC)).build()])
    assert not client.flush(timeout=60)
    stats = client.stats()
    assert (stats.delivered, stats.dead_lettered) == (1, 1)


def test_kafkas_topic_name_rules_are_the_configs(single: KafkaCluster, make_client: MakeClient, transport: str) -> None:
    longest = f"longest-{transport}".ljust(249, "n")
    client = make_client(single.brokers(), longest)
    sent = track(client, 1)
    assert client.flush(timeout=60)
    assert event_ids(single.read_topic(longest, expected=1)) == sent
    with pytest.raises(sentinel.ConfigError, match="topic"):
        sentinel.Config(topic="n" * 250)
