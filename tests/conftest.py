from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sentinel_durable.testing import EmbeddedBroker


def valid_fields(**overrides: Any) -> dict[str, Any]:
    """The fields of a small valid event, with ``overrides`` applied."""
    fields: dict[str, Any] = {
        "service_name": "svc",
        "model": "gpt-4",
        "prompt": {"text": "What is the capital of France?", "tokens": 8},
        "response": {"text": "Paris.", "tokens": 7, "finish_reason": "stop"},
        "latency_ms": 150.5,
        "cost_usd": 0.001,
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def fields() -> dict[str, Any]:
    return valid_fields()


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-compatible broker (Tansu) behind a proxy that can cut the network."""
    with EmbeddedBroker(with_proxy=True) as running:
        yield running


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    return "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:200]
