from __future__ import annotations

from typing import Any

import pytest


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
