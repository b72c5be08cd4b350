"""Fixtures of the Apache Kafka tier (collected with ``pytest --broker=apache-kafka`` only).

Clusters are module-scoped (a node takes ~6 s to start, three ~18 s on 2 cores); every test
uses topics of its own, so tests of a module share a cluster without seeing each other's data.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sentinel_durable as sentinel
from apache_kafka.launcher import KafkaCluster

#: SASL users of the secured cluster: alice is an ordinary principal, admin a super user.
ALICE, ALICE_PASSWORD = "alice", "alice-secret-5d1e"
USERS = {ALICE: ALICE_PASSWORD, "admin": "admin-secret-77a0"}

MakeClient = Callable[..., sentinel.Client]


@pytest.fixture(params=["kafka-python", "confluent"])
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        pytest.fail("confluent-kafka is not installed: pip install -e '.[dev]'")
    return str(request.param)


@pytest.fixture
def make_client(tmp_path: Path, transport: str) -> Iterator[MakeClient]:
    """``make_client(brokers, topic, **options)``: a client of ``transport`` with quick retries."""
    clients: list[sentinel.Client] = []

    def make(brokers: list[str], topic: str, **options: Any) -> sentinel.Client:
        options.setdefault("transport", transport)
        options.setdefault("spool_dir", tmp_path / "spool")
        options.setdefault("retry_backoff", 0.05)
        options.setdefault("max_retry_backoff", 0.5)
        options.setdefault("write_timeout", 5.0)
        client = sentinel.Client(brokers=brokers, topic=topic, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One node, log on disk, no proxy: outages here are the broker itself going away."""
    with KafkaCluster(1, workdir=tmp_path_factory.mktemp("kafka-single")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One node with SASL users, the StandardAuthorizer and no automatic topic creation."""
    with KafkaCluster(
        1, workdir=tmp_path_factory.mktemp("kafka-secured"), users=USERS, authorizer=True,
        broker_config={"auto.create.topics.enable": "false"},
    ) as cluster:  # fmt: skip
        yield cluster


def sasl_options(mechanism: str = "SCRAM-SHA-256", password: str = ALICE_PASSWORD) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_username": ALICE,
        "sasl_password": password,
    }


def track(client: sentinel.Client, count: int, prompt: str = "prompt") -> list[str]:
    return [
        client.track(service="svc", model="gpt-4", prompt=f"{prompt} {n}", response="Paris.", latency_ms=150.5,
                     prompt_tokens=8, completion_tokens=7, cost_usd=0.001)
        for n in range(count)
    ]  # fmt: skip


def event_ids(records: list[Any]) -> list[str]:
    return [json.loads(record.value)["event_id"] for record in records]


def pending(client: sentinel.Client) -> int:
    stats = client.stats()
    return stats.spooled + stats.in_flight
