"""One Apache Kafka broker, its log on disk, SIGKILLed while a client sends and started again.

Every event whose ``track`` returned must be in the topic afterwards, and the client must get
going again by itself (no new client, no call from the test but ``flush``). Duplicates — a
batch Kafka appended whose ack the kill cut off, sent again — are counted and reported.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from conftest import MakeClient, event_ids, track

from apache_kafka.launcher import KafkaCluster
from sentinel_durable.testing import wait_until


def test_every_acknowledged_event_survives_a_broker_sigkill_and_restart(
    single: KafkaCluster, make_client: MakeClient, topic: str, transport: str,
    chaos_report: Callable[[str], None],
) -> None:  # fmt: skip
    single.create_topic(topic, partitions=3)
    client = make_client(single.brokers(), topic)
    sent: list[str] = []
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.wait(0.005):  # a steady stream, not a flood: the test is about the restart
            sent.extend(track(client, 50))

    sender = threading.Thread(target=keep_sending, name="restart-test-sender")
    sender.start()
    try:
        wait_until(lambda: client.stats().delivered >= 2000, 60, description="delivery under way")
        single.kill(1)
        killed_at = time.monotonic()
        wait_until(lambda: client.stats().broker_connected is False, 60, description="the outage to be noticed")
        single.start_node(1)
        delivered = client.stats().delivered
        wait_until(lambda: client.stats().delivered > delivered, 120, description="delivery to resume")
        resumed_after = time.monotonic() - killed_at
    finally:
        stop.set()
        sender.join(timeout=30)
    assert client.flush(timeout=120), client.stats()
    counts = Counter(event_ids(single.read_topic(topic, expected=len(sent))))
    lost = set(sent) - counts.keys()
    duplicates = sum(count - 1 for count in counts.values())
    chaos_report(
        f"broker restart: broker=apache-kafka transport={transport} acknowledged={len(sent)} lost={len(lost)}"
        f" duplicates={duplicates} resumed_after_kill_s={resumed_after:.1f}"
    )
    assert not lost, f"{len(lost)} acknowledged events are not in the topic"
    assert client.stats().broker_connected is True
