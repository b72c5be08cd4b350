"""``SentinelSpanExporter`` with the Anthropic SDK's own spans (``anthropic`` 2.x traces its calls):
events when no instrumentation wraps the SDK. In a module of its own: test_span_exporter.py keeps
OpenLLMetry's instrumentations on for all of its tests."""

from __future__ import annotations

import types
from collections.abc import Iterator

import anthropic
import pytest
from fake_provider import FakeProvider
from genai_helpers import ANTHROPIC_MESSAGES, SYSTEM, check_event, delivered
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

pytestmark = pytest.mark.usefixtures("fresh_provider")

SERVICE = "sdk-traced-app"


@pytest.fixture
def tracer_provider(capturing_client: sentinel.Client) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(sentinel.SentinelSpanExporter(capturing_client)))
    try:
        yield provider
    finally:
        provider.force_flush()


@pytest.mark.parametrize("status", [200, 429])
def test_the_anthropic_sdks_own_spans_become_events_when_no_instrumentation_wraps_it(
    status: int, provider: FakeProvider, tracer_provider: TracerProvider, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    assert type(anthropic.resources.messages.Messages.create) is types.FunctionType  # not instrumented
    llm = anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="test-key", max_retries=0,
                              open_telemetry={"tracer_provider": tracer_provider,
                                              "traces": {"content_mode": "content"}})  # fmt: skip
    request = {"model": "claude-x", "max_tokens": 64, "system": SYSTEM, "messages": ANTHROPIC_MESSAGES}
    if status == 200:
        llm.messages.create(**request)
    else:
        provider.fail(status)
        with pytest.raises(anthropic.RateLimitError):
            llm.messages.create(**request)
    assert tracer_provider.force_flush(10_000)
    (event,) = delivered(capturing_client, module_broker, topic)
    assert event["metadata"]["provider"] == "anthropic"
    assert len(event["trace_id"]) == 32
    assert len(event["span_id"]) == 16
    if status == 200:
        check_event(event, service=SERVICE, model="claude-x-2026-01-01")  # no finish_reasons attribute: "stop"
    else:
        check_event(event, service=SERVICE, model="claude-x", response="", tokens=(0, 0), finish_reason="error",
                    errors=["rate_limit_error"])  # fmt: skip
