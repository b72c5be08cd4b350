"""Three Apache Kafka brokers: leaders killed, a quorum lost, a rolling restart — and nothing lost.

The topic has 6 partitions, replication factor 3 and ``min.insync.replicas=2``; the client
asks for ``acks=all`` (``require_acks=-1``, the default), so an ack means two replicas have
the record. Kills are SIGKILL; a node restarts on its own ports and log directory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import MakeClient, event_ids, pending, track

import sentinel_durable as sentinel
from apache_kafka.launcher import KafkaCluster
from sentinel_durable.testing import wait_until

TOPIC_CONFIG = {"min.insync.replicas": "2"}


@pytest.fixture
def replicated(trio: KafkaCluster, topic: str) -> Iterator[str]:
    """A 6-partition topic on every node; every node is running and in sync again afterwards."""
    trio.create_topic(topic, partitions=6, replication_factor=3, config=TOPIC_CONFIG)
    yield topic
    for node in trio.nodes:
        if not node.running:
            trio.start_node(node.node_id)
    trio.wait_in_sync(topic)


class Sender:
    """Tracks 50 events at a time on a thread of its own until stopped; ``sent`` is what track returned."""

    def __init__(self, client: sentinel.Client) -> None:
        self.client = client
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-sender")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.sent.extend(track(self.client, 50))

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def assert_all_delivered(cluster: KafkaCluster, topic: str, sent: list[str]) -> Counter[str]:
    counts = Counter(event_ids(cluster.read_topic(topic, expected=len(sent), timeout=120)))
    lost = set(sent) - counts.keys()
    assert not lost, f"{len(lost)} of {len(sent)} acknowledged events are not in the topic"
    return counts


def test_killing_a_partition_leader_mid_stream_loses_nothing(
    trio: KafkaCluster, replicated: str, make_client: MakeClient, transport: str,
    chaos_report: Callable[[str], None],
) -> None:  # fmt: skip
    client = make_client(trio.brokers(), replicated)
    with Sender(client) as sender:
        wait_until(lambda: client.stats().delivered >= 2000, 60, description="delivery under way")
        leader = trio.partition_leaders(replicated)[0]
        trio.kill(leader)
        killed_at = time.monotonic()
        delivered_at_kill = client.stats().delivered
        alive = {node.node_id for node in trio.running_nodes()}
        wait_until(lambda: set(trio.partition_leaders(replicated).values()) <= alive, 60,
                   description="new leaders for the dead node's partitions")  # fmt: skip
        leaders_moved_after = time.monotonic() - killed_at
    assert client.flush(timeout=120), client.stats()
    recovered_after = time.monotonic() - killed_at
    counts = assert_all_delivered(trio, replicated, sender.sent)
    chaos_report(
        f"leader failover: broker=apache-kafka brokers=3 transport={transport} acknowledged={len(sender.sent)} lost=0"
        f" duplicates={sum(counts.values()) - len(counts)} leaders_moved_after_s={leaders_moved_after:.1f}"
        f" backlog_delivered_after_s={recovered_after:.1f} delivered_at_kill={delivered_at_kill}"
    )
    assert client.stats().dead_lettered == 0


def test_with_two_of_three_brokers_down_events_wait_in_the_spool_until_one_returns(
    trio: KafkaCluster, replicated: str, make_client: MakeClient
) -> None:
    client = make_client(trio.brokers(), replicated, write_timeout=3.0)
    sent = track(client, 500)
    assert client.flush(timeout=60)
    first, second = trio.nodes[0].node_id, trio.nodes[1].node_id
    trio.kill(first)
    trio.kill(second)
    sent += track(client, 500)
    retries = client.stats().retries
    wait_until(lambda: client.stats().retries >= retries + 1000, 120, description="several failed attempts")
    stats = client.stats()
    assert stats.dead_lettered == 0
    assert pending(client) >= 1  # acks=all with one live replica of three: nothing can be acknowledged
    assert stats.last_error is not None
    trio.start_node(first)
    assert client.flush(timeout=120), client.stats()
    assert_all_delivered(trio, replicated, sent)
    assert client.stats().dead_lettered == 0


def test_a_rolling_restart_of_every_broker_loses_nothing(
    trio: KafkaCluster, replicated: str, tmp_path: Path
) -> None:
    """Both transports at once (a restart of three nodes is the slow part): one client each, one topic."""
    clients = [
        sentinel.Client(brokers=trio.brokers(), topic=replicated, transport=transport, spool_dir=tmp_path / transport,
                        retry_backoff=0.05, max_retry_backoff=0.5, write_timeout=5.0)
        for transport in ("kafka-python", "confluent")
    ]  # fmt: skip
    try:
        with contextlib.ExitStack() as stack:
            senders = [stack.enter_context(Sender(client)) for client in clients]
            for node in trio.nodes:
                delivered = [client.stats().delivered for client in clients]
                wait_until(lambda: all(c.stats().delivered > d + 500 for c, d in zip(clients, delivered, strict=True)),  # noqa: B023
                           120, description="delivery between restarts")  # fmt: skip
                trio.restart(node.node_id)  # a controlled shutdown (SIGTERM), then the same node again
                trio.wait_in_sync(replicated)
        for client in clients:
            assert client.flush(timeout=120), client.stats()
            assert client.stats().dead_lettered == 0
        assert_all_delivered(trio, replicated, [event_id for sender in senders for event_id in sender.sent])
    finally:
        for client in clients:
            client.close(timeout=2)
