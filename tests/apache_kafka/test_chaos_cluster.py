"""Chaos against three Apache Kafka brokers: the sending process and the brokers SIGKILLed at random.

The rounds of ``tests/chaos/test_chaos.py`` (a real client in a child process, SIGKILLed after
a random number of acknowledged events, the same spool directory every round), with the outage
made real: where the Tansu suite cuts a proxy, this one SIGKILLs a broker — the leader of a
partition the senders write to — and starts it again on its own log a round later. The topic
has 6 partitions, replication factor 3 and ``min.insync.replicas=2``, and the senders ask for
``acks=all``, so an event acknowledged to Kafka is on two disks' page caches.

Closing line: ``chaos: broker=apache-kafka brokers=3 broker_kills=B sdk_kills=K acknowledged=A
lost=0 duplicates=D``; ``SENTINEL_CHAOS_ROUNDS`` sets the SDK kills (broker kills are half).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.test_chaos import assert_outcome, drain_spool, read_back, run_rounds, tally

from apache_kafka.launcher import KafkaCluster


class BrokerKiller:
    """Stands in for the chaos rounds' proxy: ``cut()`` SIGKILLs a partition leader, ``restore()`` restarts it."""

    def __init__(self, cluster: KafkaCluster, topic: str, rng: random.Random) -> None:
        self.cluster, self.topic, self.rng = cluster, topic, rng
        self.down: list[int] = []
        self.kills = 0

    def cut(self) -> None:
        leaders = sorted(set(self.cluster.partition_leaders(self.topic).values()) - {-1})
        victim = self.rng.choice(leaders or [node.node_id for node in self.cluster.running_nodes()])
        self.cluster.kill(victim)
        self.down.append(victim)
        self.kills += 1

    def restore(self) -> None:
        """Start the killed JVMs again and return at once (the senders go on meanwhile)."""
        while self.down:
            self.cluster.node(self.down.pop()).start()

    def settle(self) -> None:
        self.restore()
        self.cluster.wait_ready()


class KilledBrokers:
    """The cluster as ``run_rounds`` sees a broker: its addresses, its "proxy", its records."""

    def __init__(self, cluster: KafkaCluster, killer: BrokerKiller) -> None:
        self.cluster, self.proxy = cluster, killer

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.bootstrap_servers

    def create_topic(self, name: str, partitions: int = 1) -> str:
        return self.cluster.create_topic(name, partitions)

    def read_topic(self, topic: str, expected: int | None = None, timeout: float = 30.0) -> list[Any]:
        return self.cluster.read_topic(topic, expected, timeout)


def test_every_acknowledged_event_survives_sdk_and_broker_sigkills(
    trio: KafkaCluster, transport: str, chaos_rounds: int, chaos_seed: int,
    chaos_report: Callable[[str], None], tmp_path: Path,
) -> None:  # fmt: skip
    started = time.monotonic()
    topic = trio.create_topic(f"chaos-cluster-{transport}", partitions=6, replication_factor=3,
                              config={"min.insync.replicas": "2"})  # fmt: skip
    killer = BrokerKiller(trio, topic, random.Random(chaos_seed))
    brokers = KilledBrokers(trio, killer)
    spool_dir = tmp_path / "spool"
    try:
        run = run_rounds("process", transport, brokers, spool_dir, topic, chaos_rounds, chaos_seed,
                         tmp_path / "sender.stderr")  # fmt: skip
    finally:
        killer.settle()
    final = drain_spool(brokers, spool_dir, topic, "process", transport)
    delivered = read_back(brokers, topic, expected=len(run.must_arrive))
    lost, duplicates = tally(run, delivered)
    line = (
        f"chaos: broker=apache-kafka brokers=3 broker_kills={killer.kills} sdk_kills={run.kills}"
        f" acknowledged={len(run.acknowledged)} lost={len(lost)} duplicates={duplicates}"
        f" transport={transport} seed={chaos_seed} elapsed_s={time.monotonic() - started:.1f}"
    )
    chaos_report(line)
    assert_outcome(run, delivered, final, lost, chaos_rounds, line)
    assert killer.kills == (chaos_rounds + 1) // 2
