"""``SentinelSpanExporter``: spans of real instrumentations — OpenLLMetry's for OpenAI and for
Anthropic, and the Anthropic SDK's own — of the real client libraries calling the fake provider
server, exported to events read back from the broker."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import wrapt
from conftest import QUICK_RETRIES, offline_client, pending
from fake_provider import FakeProvider
from genai_helpers import (
    ANSWER,
    ANTHROPIC_MESSAGES,
    DELIVERY_LOGGERS,
    OPENAI_MESSAGES,
    QUESTION,
    SYSTEM,
    check_event,
    delivered,
)
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

pytestmark = pytest.mark.usefixtures("fresh_provider")

SERVICE = "otel-app"


class Switch(SpanExporter):
    """Forwards to the test's exporter: the instrumentations are set up once per module (instrumenting
    again after uninstrumenting leaves OpenLLMetry's stream wrappers doubled)."""

    target: SpanExporter | None = None

    def export(self, spans: Any) -> SpanExportResult:
        return self.target.export(spans) if self.target is not None else SpanExportResult.SUCCESS


class Traced:
    """Spans of the module's instrumented tracer provider, exported to a SentinelSpanExporter of ``client``."""

    def __init__(self, tracing: Tracing, client: sentinel.Client | sentinel.AsyncClient, **options: Any) -> None:
        self.provider = tracing.provider
        self.exporter = sentinel.SentinelSpanExporter(client, **options)
        self.seen: list[tuple[str, str]] = []
        tracing.switch.target = self

    def export(self, spans: Any) -> SpanExportResult:
        for made in spans:  # the instrumentations' model-call spans (not the Anthropic SDK's own)
            scope = made.instrumentation_scope.name if made.instrumentation_scope else ""
            if (made.attributes or {}).get("gen_ai.operation.name") == "chat" and scope != "com.anthropic.sdk.python":
                context = made.get_span_context()
                self.seen.append((f"{context.trace_id:032x}", f"{context.span_id:016x}"))
        return self.exporter.export(spans)

    def spans_exported(self) -> None:
        assert self.provider.force_flush(10_000)


class Tracing:
    """One tracer provider (a batch processor in front of ``switch``) with OpenLLMetry's OpenAI and
    Anthropic instrumentations on it."""

    def __init__(self) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
        self.switch = Switch()
        self.provider.add_span_processor(BatchSpanProcessor(self.switch))
        self.instrumentors = [OpenAIInstrumentor(), AnthropicInstrumentor()]
        for instrumentor in self.instrumentors:
            instrumentor.instrument(tracer_provider=self.provider)

    def close(self) -> None:
        for instrumentor in self.instrumentors:
            instrumentor.uninstrument()
        unwrap_library_classes("openai", "anthropic")
        self.provider.shutdown()


def unwrap_library_classes(*packages: str) -> None:
    """Put back the methods wrapt still wraps in the classes of ``packages``: OpenLLMetry's OpenAI
    ``uninstrument()`` leaves ``Completions.create`` and others wrapped, and tests of other modules run
    in this process afterwards (``instrument()``'s see a stream of OpenLLMetry's, not ``openai.Stream``)."""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in packages:
            continue
        for cls in [value for value in vars(module).values() if isinstance(value, type)]:
            for attribute, value in list(vars(cls).items()):
                original = value
                while isinstance(original, wrapt.FunctionWrapper):
                    original = original.__wrapped__
                if original is not value:
                    setattr(cls, attribute, original)


@pytest.fixture(scope="module")
def tracing() -> Iterator[Tracing]:
    made = Tracing()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def traced(tracing: Tracing, capturing_client: sentinel.Client) -> Iterator[Traced]:
    made = Traced(tracing, capturing_client)
    try:
        yield made
    finally:
        tracing.switch.target = None


def openai_client(provider: FakeProvider, is_async: bool = False) -> Any:
    made = openai.AsyncOpenAI if is_async else openai.OpenAI
    return made(base_url=provider.base_url, api_key="test-key", max_retries=0)


def anthropic_client(provider: FakeProvider, traced: Traced | None = None, is_async: bool = False) -> Any:
    """``traced``: the SDK's own spans (with their content) go to its provider; else they are off."""
    options: Any = {"traces": False}
    if traced is not None:
        options = {"tracer_provider": traced.provider, "traces": {"content_mode": "content"}}
    made = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return made(base_url=provider.anthropic_base_url, api_key="test-key", max_retries=0, open_telemetry=options)


def exported_ids(traced: Traced) -> list[tuple[str, str]]:
    """The trace and span ids of the model-call spans the exporter was given."""
    return traced.seen


# -- OpenLLMetry's OpenAI instrumentation ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openllmetry_openai_chat_spans_become_events(
    stream: bool, provider: FakeProvider, traced: Traced, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    llm = openai_client(provider)
    options: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    result = llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, **options)
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in result if c.choices) == ANSWER
    traced.spans_exported()
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service=SERVICE, model="gpt-4o-2026-01-01", ids=exported_ids(traced)[0])
    assert event["metadata"] == {"operation": "chat", "provider": "openai", "response_id": "chatcmpl-fake"}


def test_openllmetry_openai_responses_spans_become_events(
    provider: FakeProvider, traced: Traced, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    openai_client(provider).responses.create(model="gpt-4o", instructions=SYSTEM, input=QUESTION)
    traced.spans_exported()
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service=SERVICE, model="gpt-4o-2026-01-01", ids=exported_ids(traced)[0])


@pytest.mark.parametrize("status", [429, 500])
def test_openllmetry_openai_api_errors_become_events_with_errors(
    status: int, provider: FakeProvider, traced: Traced, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    expected = openai.RateLimitError if status == 429 else openai.InternalServerError
    provider.fail(status)
    with pytest.raises(expected):
        openai_client(provider).chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES)
    traced.spans_exported()
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service=SERVICE, model="gpt-4o", response="", tokens=(0, 0), finish_reason="error",
                errors=[f"openai.{expected.__name__}: Error code: {status}"], ids=exported_ids(traced)[0])  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_openllmetry_async_calls_with_an_async_client(
    kind: str, stream: bool, provider: FakeProvider, tracing: Tracing, module_broker: EmbeddedBroker, topic: str,
    spool_dir: Path,
) -> None:  # fmt: skip
    client = sentinel.AsyncClient(brokers=[module_broker.bootstrap_servers], topic=topic, spool_dir=spool_dir,
                                  **QUICK_RETRIES)  # fmt: skip
    traced = Traced(tracing, client)
    try:
        if kind == "openai":
            llm = openai_client(provider, is_async=True)
            options: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
            result = await llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, **options)
            if stream:
                assert "".join([c.choices[0].delta.content or "" async for c in result if c.choices]) == ANSWER
        else:
            llm = anthropic_client(provider, is_async=True)
            result = await llm.messages.create(model="claude-x", max_tokens=64, system=SYSTEM,
                                               messages=ANTHROPIC_MESSAGES, stream=stream)  # fmt: skip
            if stream:
                assert "".join([e.delta.text async for e in result if e.type == "content_block_delta"]) == ANSWER
        await asyncio.to_thread(traced.spans_exported)  # the batch processor's thread spools
        assert await client.flush(15)
    finally:
        tracing.switch.target = None
        await client.close()
    (event,) = [json.loads(r.value) for r in module_broker.read_topic(topic, expected=1, timeout=15)]
    model = "gpt-4o-2026-01-01" if kind == "openai" else "claude-x-2026-01-01"
    check_event(event, service=SERVICE, model=model, ids=exported_ids(traced)[0],
                tokens=(12, event["response"]["tokens"]))  # fmt: skip
    assert event["response"]["tokens"] in (7, 8)  # OpenLLMetry counts an Anthropic stream's first output token twice


# -- Anthropic: OpenLLMetry's instrumentation, and the SDK's own spans ----------------------------


@pytest.mark.parametrize("how", ["create", "create-stream", "stream"])
def test_openllmetry_anthropic_spans_become_events_and_the_sdks_own_spans_of_them_do_not(
    how: str, provider: FakeProvider, traced: Traced, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    llm = anthropic_client(provider, traced)  # the SDK traces each call too, on the same provider
    request: dict[str, Any] = {"model": "claude-x", "max_tokens": 64, "system": SYSTEM, "messages": ANTHROPIC_MESSAGES}
    if how == "stream":
        with llm.messages.stream(**request) as events:
            assert "".join(events.text_stream) == ANSWER
    elif how == "create-stream":
        assert (
            "".join(
                e.delta.text for e in llm.messages.create(**request, stream=True) if e.type == "content_block_delta"
            )
            == ANSWER
        )
    else:
        llm.messages.create(**request)
    traced.spans_exported()
    (event,) = delivered(capturing_client, module_broker, topic)  # one event per call, not two
    assert event["metadata"]["provider"] == "anthropic"
    assert (event["trace_id"], event["span_id"]) == exported_ids(traced)[0]  # the instrumentation's span
    check_event(event, service=SERVICE, model="claude-x-2026-01-01", tokens=(12, event["response"]["tokens"]))
    assert event["response"]["tokens"] in (7, 8)  # OpenLLMetry counts the stream's first output token twice


@pytest.mark.parametrize("status", [429, 500])
def test_openllmetry_anthropic_api_errors_become_events_with_errors(
    status: int, provider: FakeProvider, traced: Traced, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    expected = anthropic.RateLimitError if status == 429 else anthropic.InternalServerError
    provider.fail(status)
    with pytest.raises(expected):
        anthropic_client(provider, traced).messages.create(model="claude-x", max_tokens=64, messages=ANTHROPIC_MESSAGES)
    traced.spans_exported()
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service=SERVICE, model="claude-x", prompt=QUESTION, response="", tokens=(0, 0),
                finish_reason="error", errors=[f"anthropic.{expected.__name__}: Error code: {status}"])  # fmt: skip
    assert (event["trace_id"], event["span_id"]) == exported_ids(traced)[0]  # the instrumentation's span


# -- options -------------------------------------------------------------------------------------


def test_capture_content_false_prices_service_and_before_send(
    provider: FakeProvider, tracing: Tracing, module_broker: EmbeddedBroker, topic: str, spool_dir: Path
) -> None:
    def before_send(event: sentinel.TelemetryEvent) -> sentinel.TelemetryEvent:
        return event.model_copy(update={"metadata": {**event.metadata, "hooked": "yes"}})

    with sentinel.Client(brokers=[module_broker.bootstrap_servers], topic=topic, spool_dir=spool_dir,
                         before_send=before_send, **QUICK_RETRIES) as client:  # fmt: skip
        traced = Traced(tracing, client, service="billing", capture_content=False,
                        prices=lambda model, tokens_in, tokens_out: 0.25)  # fmt: skip
        try:
            openai_client(provider).chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES)
            traced.spans_exported()
        finally:
            tracing.switch.target = None
        (event,) = delivered(client, module_broker, topic)
    check_event(event, service="billing", model="gpt-4o-2026-01-01", prompt="", response="")
    assert event["cost_usd"] == 0.25
    assert event["metadata"]["hooked"] == "yes"


# -- spans made by hand: the older conventions, what is ignored, what cannot be mapped -------------


def span(name: str = "chat", attributes: dict[str, Any] | None = None, events: list[Any] | None = None,
         status: Status | None = None) -> ReadableSpan:  # fmt: skip
    """A finished span of the SDK's own class, as an instrumentation makes it."""
    tracer = TracerProvider(resource=Resource.create({"service.name": SERVICE})).get_tracer("hand")
    made = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    for event_name, event_attributes in events or []:
        made.add_event(event_name, event_attributes)
    if status is not None:
        made.set_status(status)
    made.end()
    return made  # type: ignore[return-value]


def test_the_older_indexed_attributes_and_message_events_give_the_text(offline: sentinel.Client) -> None:
    from sentinel_durable.integrations.span_reading import call_of_span

    indexed = span(attributes={
        "gen_ai.system": "openai", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": SYSTEM,
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": QUESTION,
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": ANSWER,
        "gen_ai.usage.prompt_tokens": 12, "gen_ai.usage.completion_tokens": 7,
    })  # fmt: skip
    evented = span(
        attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4"},
        events=[("gen_ai.system.message", {"content": SYSTEM}), ("gen_ai.user.message", {"content": QUESTION}),
                ("gen_ai.choice", {"message": json.dumps({"role": "assistant", "content": ANSWER})})],
    )  # fmt: skip
    for made in (indexed, evented):
        read = call_of_span(made, "chat")
        assert (read.prompt, read.response) == (f"system: {SYSTEM}\n\nuser: {QUESTION}", ANSWER)
    assert (call_of_span(indexed, "chat").prompt_tokens, call_of_span(indexed, "chat").completion_tokens) == (12, 7)


def test_spans_that_are_not_model_calls_are_ignored_and_unmappable_ones_counted_and_logged_once(
    offline: sentinel.Client, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = sentinel.SentinelSpanExporter(offline)
    not_genai = span("GET /", {"http.request.method": "GET"})
    tool = span("execute_tool", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"})
    no_model = span(attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                                    {"type": "text", "content": QUESTION}]}])})  # fmt: skip
    good = span(attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4"},
                status=Status(StatusCode.ERROR, "timed out"))  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="sentinel_durable.integrations"):
        assert exporter.export([not_genai, tool, no_model, good, no_model]) is SpanExportResult.SUCCESS
    assert pending(offline) == 1  # only the good span, though no broker is reachable: export only spools
    assert offline.stats().capture_errors == 2
    # the offline client's flusher may warn that Kafka is unreachable meanwhile: not the exporter's to count
    ours = [r for r in caplog.records if not r.name.startswith(DELIVERY_LOGGERS)]
    assert len([r for r in ours if r.levelno >= logging.WARNING]) == 1
    assert QUESTION not in caplog.text


def test_with_a_simple_processor_each_span_is_spooled_as_it_ends_and_shutdown_closes_the_client(
    spool_dir: Path,
) -> None:
    client = offline_client(spool_dir)
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    exporter = sentinel.SentinelSpanExporter(client)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("app").start_as_current_span("chat gpt-4", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4"
    }):  # fmt: skip
        assert pending(client) == 0
    assert pending(client) == 1  # spooled though no broker is reachable
    assert exporter.force_flush(100) is False  # undelivered
    provider.shutdown()
    assert client.closed
    good = span(attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4"})
    assert exporter.export([good]) is SpanExportResult.FAILURE


def test_the_exporter_refuses_bad_options(offline: sentinel.Client) -> None:
    with pytest.raises(TypeError, match="Client or AsyncClient"):
        sentinel.SentinelSpanExporter(object())  # type: ignore[arg-type]
    with pytest.raises(sentinel.ConfigError, match="prices"):
        sentinel.SentinelSpanExporter(offline, prices={"gpt-4": (1.0, -1.0)})
    with pytest.raises(sentinel.ConfigError, match="service"):
        sentinel.SentinelSpanExporter(offline, service="")
