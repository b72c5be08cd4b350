"""A record Kafka would refuse for its size is refused at send time (``max_message_bytes``), naming the
record's size and the limit and never its content; the producers take records up to that limit."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerUnderTest, event_of_record_size, free_port
from kafka.record.default_records import DefaultRecordBatchBuilder

import sentinel_durable as sentinel
from sentinel_durable.event import DEFAULT_MAX_MESSAGE_BYTES
from sentinel_durable.records import record_size
from sentinel_durable.spool import ClaimedRecord, SpoolRecord
from sentinel_durable.transports.base import record_headers, record_key, too_large

MARKER = "size-marker-3f9a2c"
#: Kafka's default topic max.message.bytes.
KAFKA_DEFAULT = 1_048_588
SIZE = re.compile(r"a Kafka record of (\d+) bytes")


def builder(rules: Any = None, metadata_bytes: int = 0) -> sentinel.EventBuilder:
    return (
        sentinel.EventBuilder(rules).service("svc").model("gpt-4").prompt(f"{MARKER} prompt", 1)
        .response(f"{MARKER} response", 1, "stop").latency(1).metadata({"blob": MARKER + "x" * metadata_bytes})
    )  # fmt: skip


def assert_refused_for_size(error: sentinel.ValidationError, limit: int, field: str = "event") -> int:
    text = str(error)
    assert error.field == field, text
    assert f"over max_message_bytes={limit}" in text, text
    match = SIZE.search(text)
    assert match is not None, text
    assert int(match[1]) > limit
    assert MARKER not in text + repr(error)
    return int(match[1])


def test_default_limit_is_kafkas_default_max_message_bytes() -> None:
    assert sentinel.Config().max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == KAFKA_DEFAULT
    assert sentinel.Config.from_env({"SENTINEL_MAX_MESSAGE_BYTES": "2MiB"}).max_message_bytes == 2 << 20


def test_build_refuses_an_event_with_1_mib_of_metadata() -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        builder(metadata_bytes=1 << 20).build()
    size = assert_refused_for_size(caught.value, KAFKA_DEFAULT)
    assert size > (1 << 20)


def test_track_send_and_send_batch_refuse_it_and_spool_nothing(offline: sentinel.Client) -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        offline.track(service="svc", model="m", prompt="p", response="r", latency_ms=1,
                             metadata={"blob": MARKER + "x" * (1 << 20)})  # fmt: skip
    assert_refused_for_size(caught.value, KAFKA_DEFAULT)
    big = builder(sentinel.Config(max_message_bytes=4 << 20), metadata_bytes=1 << 20).build()  # built elsewhere
    with pytest.raises(sentinel.ValidationError) as caught:
        offline.send(big)
    assert_refused_for_size(caught.value, KAFKA_DEFAULT)
    with pytest.raises(sentinel.ValidationError) as caught:
        offline.send(big.model_dump(), wait=True, timeout=1)  # type: ignore[arg-type]  # a dict
    assert_refused_for_size(caught.value, KAFKA_DEFAULT)
    with pytest.raises(sentinel.ValidationError) as caught:
        offline.send_batch([builder().build(), big])
    assert_refused_for_size(caught.value, KAFKA_DEFAULT, field="events[1].event")
    stats = offline.stats()
    assert stats.spooled + stats.in_flight == 0  # nothing unsendable (and nothing of the refused batch) on disk


def test_async_client_refuses_it_too(tmp_path: Path) -> None:
    async def scenario() -> None:
        options = {"brokers": [f"127.0.0.1:{free_port()}"], "topic": "sizes", "spool_dir": tmp_path / "spool"}
        async with sentinel.AsyncClient(**options) as client:
            with pytest.raises(sentinel.ValidationError) as caught:
                await client.track(service="svc", model="m", prompt="p", response="r", latency_ms=1,
                                   metadata={"blob": MARKER + "x" * (1 << 20)})  # fmt: skip
            assert_refused_for_size(caught.value, KAFKA_DEFAULT)
            assert (await client.stats()).spooled == 0

    asyncio.run(scenario())


def test_the_limit_is_max_message_bytes() -> None:
    rules = sentinel.Config(max_message_bytes=10_000, max_spool_bytes=1 << 20)
    assert builder(rules, metadata_bytes=5_000).build()
    with pytest.raises(sentinel.ValidationError) as caught:
        builder(rules, metadata_bytes=10_000).build()
    assert_refused_for_size(caught.value, 10_000)


def marked_event_of_record_size(target: int) -> sentinel.TelemetryEvent:
    """``builder``'s event whose record (value, key, headers and framing, as estimated) is exactly ``target`` bytes."""
    rules = sentinel.Config(max_message_bytes=8 << 20)
    return event_of_record_size(target, lambda metadata_bytes: builder(rules, metadata_bytes))


def test_an_event_exactly_at_the_limit_is_accepted_and_one_byte_more_is_not(offline: sentinel.Client) -> None:
    offline.send(marked_event_of_record_size(KAFKA_DEFAULT))
    with pytest.raises(sentinel.ValidationError):
        offline.send(marked_event_of_record_size(KAFKA_DEFAULT + 1))
    stats = offline.stats()
    assert stats.spooled + stats.in_flight == 1


@pytest.mark.parametrize("partition_key", ["service_name", "event_id", "none"])
@pytest.mark.parametrize("service", ["s", "checkout-assistant", "é" * 120, "s" * 255])
@pytest.mark.parametrize("metadata_bytes", [0, 200, 70_000, 1_000_000])
def test_the_estimate_is_never_below_what_kafka_python_checks(
    partition_key: str, service: str, metadata_bytes: int
) -> None:
    # kafka-python refuses a record whose estimate_size_in_bytes is over max_request_size; ours must never be
    # smaller, so that a record the send-time check lets through is never refused by the producer.
    config = sentinel.Config(partition_key=partition_key, max_message_bytes=8 << 20)
    event = builder(config, metadata_bytes).service(service).build()
    spooled = SpoolRecord.from_event(event)
    claimed = ClaimedRecord(1, spooled.data, spooled.event_id, spooled.service_name, spooled.model,
                            spooled.event_time_ms, 0, 0.0)  # fmt: skip
    theirs = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        record_key(config, claimed), claimed.data, record_headers(claimed)
    )
    ours = record_size(len(spooled.data), event.service_name, event.model)
    # Conservative, and not by much: at most the key partition_key did not choose, and varint widths.
    assert theirs <= ours <= theirs + max(len(service.encode()), 36) + 64


def test_a_record_refused_as_too_large_is_said_to_be_about_its_estimated_size() -> None:
    event = builder(metadata_bytes=2_000).build()
    spooled = SpoolRecord.from_event(event)
    claimed = ClaimedRecord(1, spooled.data, spooled.event_id, spooled.service_name, spooled.model,
                            spooled.event_time_ms, 0, 0.0)  # fmt: skip
    estimate = record_size(len(spooled.data), event.service_name, event.model)
    result = too_large("MessageSizeTooLargeError", claimed, 1_000, "sizes")
    assert f"the record is about {estimate} bytes, more than topic 'sizes' accepts (max.message.bytes=1000)" in (
        result.error or ""
    )
    assert MARKER not in (result.error or "")


def assert_delivered(
    client: sentinel.Client, event: sentinel.TelemetryEvent, broker: BrokerUnderTest, topic: str
) -> None:
    """``client`` delivers ``event`` (waiting for its ack), is closed, and the topic holds it."""
    try:
        assert client.send(event, wait=True, timeout=60) == event.event_id
    finally:
        client.close(timeout=5)
    (record,) = broker.read_topic(topic, expected=1)
    assert json.loads(record.value)["event_id"] == event.event_id


def test_a_record_at_the_default_limit_is_delivered(
    broker: BrokerUnderTest, topic: str, tmp_path: Path, transport: str
) -> None:
    """What the send-time check lets through, the producer sends (librdkafka's own default, 1,000,000 bytes,
    used to refuse it; kafka-python's 1 MiB request limit is below Kafka's 1,048,588)."""
    event = marked_event_of_record_size(KAFKA_DEFAULT)
    client = sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=tmp_path / "spool",
                             transport=transport, max_retries=1)  # fmt: skip
    assert_delivered(client, event, broker, topic)


def test_a_larger_max_message_bytes_lets_the_producer_send_larger_records(
    broker: BrokerUnderTest, topic: str, tmp_path: Path, transport: str
) -> None:
    """max_message_bytes set for a topic that takes more (Tansu takes any size): the producer follows it."""
    client = sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=tmp_path / "spool",
                             transport=transport, max_retries=1, max_message_bytes=3_000_000)  # fmt: skip
    event = builder(client.config, metadata_bytes=2_000_000).build()
    assert_delivered(client, event, broker, topic)
