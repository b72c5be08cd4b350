"""The client end to end against a real Kafka-compatible broker (Tansu), never a mock."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerUnderTest, build, event_ids, free_port, pending, returns_within, track
from spool_helpers import drain_all
from wire_schema import parse_wire

import sentinel_durable as sentinel
from sentinel_durable.testing import wait_until

PROGRAMS = Path(__file__).parent / "programs"
#: How each transport names a record larger than the broker takes.
TOO_LARGE = re.compile(r"MessageSizeTooLarge|MSG_SIZE_TOO_LARGE")


# --- delivery -----------------------------------------------------------------------------------


def test_tracked_events_arrive_with_wire_json_key_and_headers(
    broker: BrokerUnderTest, make_client: Any, topic: str
) -> None:
    client = make_client(broker.bootstrap_servers)
    sent = track(client, 1000, metadata={"region": "eu"})
    assert client.flush(timeout=60)
    records = broker.read_topic(topic, expected=1000)
    assert sorted(event_ids(records)) == sorted(sent)
    for record in records:
        document = parse_wire(record.value)
        assert record.key == b"svc"
        headers = dict(record.headers)
        assert headers["event_id"] == document["event_id"].encode()
        assert headers["service_name"] == b"svc"
        assert headers["model"] == b"gpt-4"
        assert headers["content-type"] == b"application/json"
        assert headers["sdk.name"] == b"sentinel-durable"
        assert headers["sdk.version"] == sentinel.__version__.encode()
        stamp = sentinel.TelemetryEvent.from_json(record.value).timestamp
        assert record.timestamp == int(stamp.timestamp() * 1000)
    stats = client.stats()
    assert (stats.delivered, stats.spooled, stats.in_flight, stats.broker_connected) == (1000, 0, 0, True)
    assert stats.messages == 1000
    assert stats.writes >= 1


@pytest.mark.parametrize(("partition_key", "expected"), [("event_id", "event_id"), ("none", None)])
def test_partition_key_option(
    broker: BrokerUnderTest, make_client: Any, topic: str, partition_key: str, expected: str | None
) -> None:
    client = make_client(broker.bootstrap_servers, partition_key=partition_key)
    (event_id,) = track(client, 1)
    assert client.flush(timeout=30)
    (record,) = broker.read_topic(topic, expected=1)
    assert record.key == (event_id.encode() if expected else None)


def test_events_sent_before_any_broker_exists_are_delivered_when_it_starts(
    make_client: Any, topic: str, broker_on_port: Any
) -> None:
    port = free_port()
    client = make_client(f"127.0.0.1:{port}")
    sent = track(client, 5000)
    assert pending(client) == 5000
    with broker_on_port(port) as broker:
        assert client.flush(timeout=120)
        records = broker.read_topic(topic, expected=5000)
    assert set(event_ids(records)) == set(sent)


def test_broker_outage_in_the_middle_of_a_drain_loses_nothing(
    broker: BrokerUnderTest, make_client: Any, topic: str
) -> None:
    assert broker.proxy is not None
    client = make_client(broker.bootstrap_servers)
    sent = track(client, 20_000)
    wait_until(lambda: client.stats().delivered > 2000, 60, description="the drain to start")
    broker.proxy.cut()
    wait_until(lambda: client.stats().broker_connected is False, 60, description="the outage to be noticed")
    sent += track(client, 1000)  # sends keep working during the outage
    broker.proxy.restore()
    assert client.flush(timeout=180)
    records = broker.read_topic(topic, expected=len(sent))
    ids = event_ids(records)
    assert set(ids) == set(sent), f"{len(set(sent) - set(ids))} events lost"
    duplicates = len(ids) - len(set(ids))
    assert duplicates <= len(ids)  # at-least-once: any duplicate carries the same event_id


def test_outage_logs_one_warning_and_one_recovery(
    broker: BrokerUnderTest, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert broker.proxy is not None
    client = make_client(broker.bootstrap_servers)
    track(client, 10)
    assert client.flush(timeout=30)
    with caplog.at_level(logging.INFO, logger="sentinel_durable"):
        broker.proxy.cut()
        track(client, 10)
        wait_until(lambda: client.stats().broker_connected is False, 60, description="the outage to be noticed")
        retries = client.stats().retries
        wait_until(lambda: client.stats().retries >= retries + 20, 60, description="several more retries")
        assert client.stats().last_error
        broker.proxy.restore()
        assert client.flush(timeout=60)
    ours = [r for r in caplog.records if r.name.startswith("sentinel_durable")]
    warnings = [r for r in ours if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    recoveries = [r for r in ours if r.levelno == logging.INFO and "reachable again" in r.getMessage()]
    assert (len(warnings), len(recoveries)) == (1, 1), [r.getMessage() for r in ours]


def test_process_killed_with_broker_down_is_replayed_by_the_next_process(
    make_client: Any, spool_dir: Path, topic: str, broker_on_port: Any
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "send_then_die.py"), str(spool_dir), f"127.0.0.1:{port}", "2000", topic],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    sent = []
    for line in process.stdout:
        if line == "sent\n":
            break
        sent.append(line.strip())
    process.kill()
    process.wait(timeout=30)
    assert len(sent) == 2000
    with broker_on_port(port) as broker:
        client = make_client(broker.bootstrap_servers)
        assert client.flush(timeout=120)
        records = broker.read_topic(topic, expected=2000)
    assert set(event_ids(records)) == set(sent)


def test_exit_hook_delivers_what_was_tracked(broker: BrokerUnderTest, spool_dir: Path, topic: str) -> None:
    subprocess.run(
        [sys.executable, str(PROGRAMS / "exit_without_close.py"), str(spool_dir), broker.bootstrap_servers, "300",
         topic],
        check=True, timeout=60,
    )  # fmt: skip
    assert len(broker.read_topic(topic, expected=300)) >= 300
    assert drain_all(spool_dir) == []


# --- poison records -----------------------------------------------------------------------------------


def spool_oversized_event(make_client: Any) -> str:
    """A 2 MB event on disk, more than Kafka takes: spooled offline by a client whose max_message_bytes was set
    above the topic's limit (the send-time check holds a client to its own max_message_bytes, so a client
    with the default limit refuses it; its producer refuses it when it finds it in the spool)."""
    writer = make_client(f"127.0.0.1:{free_port()}", max_message_bytes=3_000_000)
    event_id: str = writer.track(
        service="svc", model="m", prompt="p", response="r", latency_ms=1, metadata={"blob": "x" * 2_000_000}
    )
    writer.close(timeout=0)
    return event_id


def test_poison_record_is_dead_lettered_and_does_not_block_the_rest(
    broker: BrokerUnderTest, make_client: Any, topic: str
) -> None:
    client = make_client(broker.bootstrap_servers, max_retries=2)
    before = track(client, 5)
    poison = spool_oversized_event(make_client)
    after = track(client, 5)
    assert not client.flush(timeout=60)  # one of them could not be delivered
    wait_until(lambda: client.stats().dead_lettered == 1, 30, description="the dead letter")
    records = broker.read_topic(topic, expected=10)
    assert set(event_ids(records)) == set(before + after)
    stats = client.stats()
    assert stats.dead_letters == 1
    assert TOO_LARGE.search(stats.last_error or "")
    claim_free = drain_all(client.config.spool_directory())
    assert claim_free == []  # nothing pending: the poison event is kept aside as a dead letter
    assert poison not in event_ids(records)


# --- waiting and closing -----------------------------------------------------------------------------------


def test_send_and_wait_returns_once_acked(broker: BrokerUnderTest, make_client: Any, topic: str) -> None:
    client = make_client(broker.bootstrap_servers)
    built = build()
    assert client.send(built, wait=True, timeout=30) == built.event_id
    assert client.stats().delivered == 1
    assert event_ids(broker.read_topic(topic, expected=1)) == [built.event_id]


def test_send_and_wait_times_out_and_the_event_is_still_delivered(
    broker: BrokerUnderTest, make_client: Any, topic: str
) -> None:
    client = make_client(broker.bootstrap_servers)
    event = build()
    with pytest.raises(sentinel.DeliveryTimeoutError) as caught:
        client.send(event, wait=True, timeout=0)  # no broker acks this fast
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout == 0
    assert client.flush(timeout=30)
    assert event_ids(broker.read_topic(topic, expected=1)) == [event.event_id]


def test_send_and_wait_reports_unreachable_broker(make_client: Any) -> None:
    client = make_client(f"127.0.0.1:{free_port()}", write_timeout=0.5)
    track(client, 1)
    wait_until(lambda: client.stats().broker_connected is False, 30, description="the outage to be noticed")
    with pytest.raises(sentinel.DeliveryTimeoutError) as caught:  # what happened to the call: it timed out
        client.send(build(), wait=True, timeout=1)
    cause = caught.value.__cause__  # and why: no broker reachable (docs/operations.md)
    assert isinstance(cause, sentinel.BrokerConnectionError)
    assert isinstance(cause, ConnectionError)
    assert cause.brokers == client.config.brokers


def test_close_with_broker_down_returns_in_time_and_keeps_events(make_client: Any, spool_dir: Path) -> None:
    client = make_client(f"127.0.0.1:{free_port()}", write_timeout=30)
    sent = track(client, 500)
    # close(timeout=1) gives up on delivering: it does not wait for a delivery attempt (30 s).
    returns_within(10, lambda: client.close(timeout=1), "close(timeout=1) to return")
    assert client.closed
    assert {event["event_id"] for event in drain_all(spool_dir)} == set(sent)


def test_close_releases_spool_files_even_when_the_broker_never_answers(make_client: Any, spool_dir: Path) -> None:
    with socket.socket() as black_hole:  # accepts connections, never says a word
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(100)
        client = make_client(f"127.0.0.1:{black_hole.getsockname()[1]}", write_timeout=30)
        sent = track(client, 50)
        # close(timeout=1) returns though the batch in flight waits for acks for up to 30 s...
        returns_within(10, lambda: client.close(timeout=1), "close(timeout=1) to return")
        # ...and the spool's files are free: another spool adopts them and finds every event.
        assert {event["event_id"] for event in drain_all(spool_dir)} == set(sent)


def test_creating_a_client_does_not_wait_for_a_broker(make_client: Any) -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(100)
        address = f"127.0.0.1:{black_hole.getsockname()[1]}"
        # kafka-python's own producer would block here until the broker answered, or its bootstrap gave up
        # (write_timeout, 30 s): Client() and track() return without a word from the broker.
        client = returns_within(10, lambda: make_client(address, write_timeout=30), "Client() to return")
        returns_within(10, lambda: track(client, 10), "track() to return")
        assert pending(client) == 10


def test_calls_after_close_raise_client_closed(make_client: Any) -> None:
    client = make_client(f"127.0.0.1:{free_port()}")
    client.close(timeout=0.5)
    with pytest.raises(sentinel.ClientClosedError):
        track(client, 1)
    with pytest.raises(sentinel.ClientClosedError):
        client.flush()
    client.close()  # closing twice is harmless


def test_context_manager_closes(broker: BrokerUnderTest, spool_dir: Path, topic: str) -> None:
    with sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir) as client:
        track(client, 10)
    assert client.closed
    assert len(broker.read_topic(topic, expected=10)) >= 10


def test_from_env(broker: BrokerUnderTest, spool_dir: Path, topic: str) -> None:
    environ = {"SENTINEL_BROKERS": broker.bootstrap_servers, "SENTINEL_TOPIC": topic,
               "SENTINEL_SPOOL_DIR": str(spool_dir), "SENTINEL_COMPRESSION": "gzip"}  # fmt: skip
    with sentinel.Client.from_env(environ) as client:
        assert client.config.compression == "gzip"
        track(client, 3)
        assert client.flush(timeout=30)
    assert len(broker.read_topic(topic, expected=3)) == 3


# --- batches and validation ------------------------------------------------------------------------------


def test_send_batch_delivers_all(broker: BrokerUnderTest, make_client: Any, topic: str) -> None:
    client = make_client(broker.bootstrap_servers)
    events = [build(n) for n in range(1000)]
    assert client.send_batch(events) == [event.event_id for event in events]
    assert client.flush(timeout=60)
    assert set(event_ids(broker.read_topic(topic, expected=1000))) == {event.event_id for event in events}


def test_send_batch_is_all_or_nothing(make_client: Any) -> None:
    client = make_client(f"127.0.0.1:{free_port()}")
    events = [build(n) for n in range(10)]
    events[7].prompt.tokens = -1  # changed after build(): caught at send time
    with pytest.raises(sentinel.ValidationError) as caught:
        client.send_batch(events)
    assert caught.value.field == "events[7].prompt.tokens"
    assert client.stats().spooled == 0


def test_send_revalidates_with_the_clients_rules(make_client: Any, spool_dir: Path) -> None:
    client = make_client(f"127.0.0.1:{free_port()}", max_text_length=20)
    event = build()
    event.prompt.text = "y" * 100
    client.send(event)
    client.close(timeout=0.1)
    (spooled,) = drain_all(spool_dir)
    assert len(spooled["prompt"]["text"]) == 20


def test_track_refuses_bad_input_by_field(make_client: Any) -> None:
    client = make_client(f"127.0.0.1:{free_port()}")
    with pytest.raises(sentinel.ValidationError) as caught:
        client.track(service="svc", model="m", prompt="p", response="r", latency_ms=float("nan"))
    assert caught.value.field == "latency_ms"
    assert client.stats().spooled == 0


def test_missing_codec_library_is_a_config_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "zstandard" else real(name, *a))
    with pytest.raises(sentinel.ConfigError) as caught:
        sentinel.Client(compression="zstd", spool_dir="/tmp/unused-sentinel-spool")
    assert caught.value.name == "compression"
    assert "sentinel-durable[zstd]" in str(caught.value)


# --- compression, fork ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_each_compression_codec_round_trips(broker: BrokerUnderTest, make_client: Any, topic: str, codec: str) -> None:
    client = make_client(broker.bootstrap_servers, compression=codec)
    events = [build(n) for n in range(50)]
    client.send_batch(events)
    assert client.flush(timeout=30)
    records = broker.read_topic(topic, expected=50)
    assert sorted(record.value for record in records) == sorted(event.to_json() for event in events)


def test_forked_child_and_parent_both_deliver(broker: BrokerUnderTest, make_client: Any, topic: str) -> None:
    client = make_client(broker.bootstrap_servers)
    parent_ids = track(client, 50, service="parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own spool file and flusher
        code = 1
        try:
            child_ids = track(client, 50, service="child")
            delivered = client.flush(timeout=60)
            os.write(write, ("\n".join(child_ids) if delivered else "").encode())
            client.close(timeout=5)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_ids = b"".join(chunks).decode().split()
    assert len(child_ids) == 50
    parent_ids += track(client, 50, service="parent")
    assert client.flush(timeout=60)
    records = broker.read_topic(topic, expected=150)
    assert set(event_ids(records)) == set(parent_ids) | set(child_ids)


def test_concurrent_senders_lose_nothing(broker: BrokerUnderTest, make_client: Any, topic: str) -> None:
    client = make_client(broker.bootstrap_servers)
    results: list[list[str]] = [[] for _ in range(8)]

    def send(slot: int) -> None:
        results[slot] = track(client, 250, service=f"s{slot}")

    threads = [threading.Thread(target=send, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert client.flush(timeout=60)
    sent = {event_id for ids in results for event_id in ids}
    assert len(sent) == 2000
    assert set(event_ids(broker.read_topic(topic, expected=2000))) == sent


def test_async_mode_delivers_and_close_writes_what_is_buffered(
    broker: BrokerUnderTest, make_client: Any, topic: str, spool_dir: Path
) -> None:
    client = make_client(broker.bootstrap_servers, async_mode=True, batch_timeout=0.05)
    assert client.config.durability == "async"
    sent = track(client, 500)
    assert client.flush(timeout=60)
    assert set(event_ids(broker.read_topic(topic, expected=500))) == set(sent)
    offline = make_client(f"127.0.0.1:{free_port()}", async_mode=True, batch_timeout=60, spool_dir=spool_dir / "b")
    kept = track(offline, 20)  # buffered in memory for up to a minute...
    offline.close(timeout=0.5)  # ...but close writes them to disk
    assert {event["event_id"] for event in drain_all(spool_dir / "b")} == set(kept)


def test_stats_after_close_are_the_final_figures(broker: BrokerUnderTest, make_client: Any) -> None:
    client = make_client(broker.bootstrap_servers)
    track(client, 25)
    client.close(timeout=30)
    stats = client.stats()
    assert (stats.delivered, stats.spooled, stats.in_flight) == (25, 0, 0)


def test_async_flush_never_claims_delivery_without_a_broker(make_client: Any) -> None:
    client = make_client(f"127.0.0.1:{free_port()}", async_mode=True, batch_timeout=0.001)
    for _ in range(100):
        track(client, 3)
        assert client.flush(timeout=0.01) is False


def test_stats_while_adopted_files_drain_and_vanish(broker: BrokerUnderTest, make_client: Any, spool_dir: Path) -> None:
    for _ in range(30):  # thirty files left by clients that are gone
        dead = sentinel.Client(brokers=["127.0.0.1:1"], spool_dir=spool_dir, write_timeout=0.5)
        track(dead, 5)
        dead.close(timeout=0)
    client = make_client(broker.bootstrap_servers)
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                client.stats()
            except BaseException as exc:
                errors.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert client.flush(timeout=60)
    finally:
        done.set()
        poller.join(timeout=10)
    assert errors == []
    assert client.stats().spool_files == 1


def test_a_hung_close_still_releases_the_producer(make_client: Any) -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(100)
        client = make_client(f"127.0.0.1:{black_hole.getsockname()[1]}", write_timeout=2)
        track(client, 5)
        client.close(timeout=0.2)

        def quiet() -> bool:
            names = [thread.name for thread in threading.enumerate()]
            return not any(name.startswith(("sentinel-durable-flusher", "sentinel-durable-network")) for name in names)

        wait_until(quiet, 30, description="the flusher and its producer to go away")


# --- hooks and callbacks ----------------------------------------------------------------------------------


def test_before_send_can_redact_and_drop(broker: BrokerUnderTest, make_client: Any, topic: str) -> None:
    def redact(event: sentinel.TelemetryEvent) -> sentinel.TelemetryEvent | None:
        if event.metadata.get("drop") == "yes":
            return None
        event.prompt.text = "[redacted]"
        return event

    client = make_client(broker.bootstrap_servers, before_send=redact)
    kept = track(client, 3)
    track(client, 2, metadata={"drop": "yes"})
    assert client.flush(timeout=30)
    records = broker.read_topic(topic, expected=3)
    assert sorted(event_ids(records)) == sorted(kept)
    assert {json.loads(r.value)["prompt"]["text"] for r in records} == {"[redacted]"}
    assert client.stats().dropped == {"before_send": 2}


def test_before_send_result_is_validated_again(make_client: Any) -> None:
    def breaks_it(event: sentinel.TelemetryEvent) -> sentinel.TelemetryEvent:
        event.latency_ms = -1
        return event

    client = make_client(f"127.0.0.1:{free_port()}", before_send=breaks_it)
    with pytest.raises(sentinel.ValidationError) as caught:
        track(client, 1)
    assert caught.value.field == "latency_ms"
    assert pending(client) == 0


def test_on_delivery_and_on_error_callbacks(broker: BrokerUnderTest, make_client: Any) -> None:
    delivered: list[str] = []
    failed: list[sentinel.SendError] = []

    def flaky_delivery(ids: list[str]) -> None:
        delivered.extend(ids)
        raise RuntimeError("a bug in the user's callback")  # must not stop delivery

    client = make_client(broker.bootstrap_servers, max_retries=1, on_delivery=flaky_delivery, on_error=failed.append)
    ok = track(client, 20)
    poison = spool_oversized_event(make_client)
    ok += track(client, 5)
    client.flush(timeout=60)
    wait_until(lambda: len(delivered) == 25 and len(failed) == 1, 30, description="the callbacks")
    assert sorted(delivered) == sorted(ok)
    assert failed[0].event_id == poison
    assert TOO_LARGE.search(str(failed[0]))
    assert client.stats().errors >= 1
