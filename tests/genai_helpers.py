"""Fixtures of the integration tests: the fake provider server, one broker per module, a client,
and reading back the events that reached the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUICK_RETRIES
from fake_provider import FakeProvider

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

#: The prompt every test sends, and the text it becomes (docs/integrations.md).
SYSTEM = "Be terse."
QUESTION = "What is Kafka?"
PROMPT_TEXT = f"system: {SYSTEM}\n\nuser: {QUESTION}"
ANSWER = "Kafka is a distributed log."
#: Loggers of the delivery side (the flusher, the transports): an offline client may warn through them that
#: Kafka is unreachable while a test counts what the integrations logged.
DELIVERY_LOGGERS = ("sentinel_durable.flusher", "sentinel_durable.transports")
OPENAI_MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
ANTHROPIC_MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as served:
        yield served


@pytest.fixture(autouse=False)
def fresh_provider(provider: FakeProvider) -> FakeProvider:
    """The module's provider with no answer scripted by an earlier test."""
    provider._script.clear()
    return provider


@pytest.fixture(scope="module")
def module_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def capturing_client(module_broker: EmbeddedBroker, topic: str, spool_dir: Path) -> Iterator[sentinel.Client]:
    with sentinel.Client(
        brokers=[module_broker.bootstrap_servers], topic=topic, spool_dir=spool_dir, **QUICK_RETRIES
    ) as made:
        yield made


def read_events(broker: EmbeddedBroker, topic: str, count: int = 1) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in broker.read_topic(topic, expected=count, timeout=15)]


def delivered(client: sentinel.Client, broker: EmbeddedBroker, topic: str, count: int = 1) -> list[dict[str, Any]]:
    """The events ``client`` tracked, as the broker holds them (flushed first)."""
    assert client.flush(timeout=15), client.stats()
    assert client.stats().delivered == count  # no more: a duplicate would be seen here
    return read_events(broker, topic, count)


def check_event(
    event: dict[str, Any],
    *,
    service: str,
    model: str,
    prompt: str = PROMPT_TEXT,
    response: str = ANSWER,
    tokens: tuple[int, int] = (12, 7),
    finish_reason: str = "stop",
    errors: list[str] | None = None,
    ids: tuple[str, str] | None = None,
) -> None:
    """The fields every integration path is checked on. ``errors``: a prefix of each error's text."""
    assert event["service_name"] == service
    assert event["model"] == model
    assert event["prompt"]["text"] == prompt
    assert event["response"]["text"] == response
    assert (event["prompt"]["tokens"], event["response"]["tokens"]) == tokens
    assert event["response"]["finish_reason"] == finish_reason
    assert event["latency_ms"] > 0
    assert len(event["errors"]) == len(errors or [])
    for text, prefix in zip(event["errors"], errors or [], strict=True):
        assert text.startswith(prefix), text
    if ids is not None:
        assert (event.get("trace_id"), event.get("span_id")) == ids
