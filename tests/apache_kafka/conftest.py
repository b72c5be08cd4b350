"""Fixtures of the Apache Kafka tier (collected with ``pytest --broker=apache-kafka`` only).

Clusters are module-scoped (a node takes ~6 s to start, three ~18 s on 2 cores); every test
uses topics of its own, so tests of a module share a cluster without seeing each other's data.
Clients are made with ``make_client(cluster.brokers(), topic, **options)``, events tracked with
``track``, as everywhere (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apache_kafka.launcher import KafkaCluster

#: SASL users of the secured cluster: alice is an ordinary principal, admin a super user.
ALICE, ALICE_PASSWORD = "alice", "alice-secret-5d1e"
USERS = {ALICE: ALICE_PASSWORD, "admin": "admin-secret-77a0"}

@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One node, log on disk, no proxy: outages here are the broker itself going away."""
    with KafkaCluster(1, workdir=tmp_path_factory.mktemp("kafka-single")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three nodes, logs on disk, no proxy: for failover (replicated topics) and the chaos run."""
    with KafkaCluster(3, workdir=tmp_path_factory.mktemp("kafka-trio")) as cluster:
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
