"""``client.instrument(llm_client)``: the real openai and anthropic libraries against the fake
provider server (tests/fake_provider.py); every event is read back from the broker."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from conftest import QUICK_RETRIES
from fake_provider import FakeProvider
from genai_helpers import (
    ANSWER,
    ANTHROPIC_MESSAGES,
    DELIVERY_LOGGERS,
    OPENAI_MESSAGES,
    PROMPT_TEXT,
    QUESTION,
    SYSTEM,
    check_event,
    delivered,
    read_events,
)
from opentelemetry.sdk.trace import TracerProvider

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

pytestmark = pytest.mark.usefixtures("fresh_provider")

#: api -> (the provider, the model asked for, the finish reason the fake provider's answer reads as)
APIS = {
    "chat": ("openai", "gpt-4o", "stop"),
    "responses": ("openai", "gpt-4o", "stop"),
    "messages": ("anthropic", "claude-x", "end_turn"),
    "messages.stream": ("anthropic", "claude-x", "end_turn"),
}
STREAMING = [("chat", False), ("chat", True), ("responses", False), ("responses", True),
             ("messages", False), ("messages", True), ("messages.stream", True)]  # fmt: skip
_tracer = TracerProvider().get_tracer("tests")


def llm_client(provider: FakeProvider, kind: str, is_async: bool) -> Any:
    if kind == "openai":
        made = openai.AsyncOpenAI if is_async else openai.OpenAI
        return made(base_url=provider.base_url, api_key="test-key", max_retries=0)
    made = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return made(base_url=provider.anthropic_base_url, api_key="test-key", max_retries=0,
                open_telemetry={"traces": False})  # fmt: skip


def call(llm: Any, api: str, stream: bool) -> str:
    """One call as an application writes it; returns the text the application saw."""
    if api == "chat":
        result = llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=stream)
        # chunk.choices[0] on every chunk: a usage chunk (choices=[]) the caller did not ask for would break it
        return (
            "".join(chunk.choices[0].delta.content or "" for chunk in result)
            if stream
            else result.choices[0].message.content
        )
    if api == "responses":
        result = llm.responses.create(model="gpt-4o", instructions=SYSTEM, input=QUESTION, stream=stream)
        return (
            "".join(e.delta for e in result if e.type == "response.output_text.delta") if stream else result.output_text
        )
    if api == "messages":
        result = llm.messages.create(model="claude-x", max_tokens=64, system=SYSTEM, messages=ANTHROPIC_MESSAGES,
                                     stream=stream)  # fmt: skip
        if stream:
            return "".join(e.delta.text for e in result if e.type == "content_block_delta")
        return str(result.content[0].text)
    with llm.messages.stream(model="claude-x", max_tokens=64, system=SYSTEM, messages=ANTHROPIC_MESSAGES) as events:
        return "".join(events.text_stream)


async def acall(llm: Any, api: str, stream: bool) -> str:
    if api == "chat":
        result = await llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=stream)
        if stream:
            return "".join([chunk.choices[0].delta.content or "" async for chunk in result])
        return str(result.choices[0].message.content)
    if api == "responses":
        result = await llm.responses.create(model="gpt-4o", instructions=SYSTEM, input=QUESTION, stream=stream)
        if stream:
            return "".join([e.delta async for e in result if e.type == "response.output_text.delta"])
        return str(result.output_text)
    if api == "messages":
        result = await llm.messages.create(model="claude-x", max_tokens=64, system=SYSTEM,
                                           messages=ANTHROPIC_MESSAGES, stream=stream)  # fmt: skip
        if stream:
            return "".join([e.delta.text async for e in result if e.type == "content_block_delta"])
        return str(result.content[0].text)
    async with llm.messages.stream(model="claude-x", max_tokens=64, system=SYSTEM, messages=ANTHROPIC_MESSAGES) as s:
        return "".join([text async for text in s.text_stream])


def span_ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


# -- every path, read back from the broker ------------------------------------------------------


@pytest.mark.parametrize(("api", "stream"), STREAMING)
def test_a_sync_call_tracks_one_event(
    api: str, stream: bool, provider: FakeProvider, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    kind, model, finish = APIS[api]
    llm = llm_client(provider, kind, is_async=False)
    assert capturing_client.instrument(llm, service="chat-api") is llm
    with _tracer.start_as_current_span("request") as span:
        seen = call(llm, api, stream)
    assert seen == ANSWER
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service="chat-api", model=f"{model}-2026-01-01", finish_reason=finish, ids=span_ids(span))
    assert event["metadata"]["provider"] == kind


@pytest.mark.asyncio
@pytest.mark.parametrize("sentinel_kind", ["Client", "AsyncClient"])
@pytest.mark.parametrize(("api", "stream"), STREAMING)
async def test_an_async_call_tracks_one_event(
    api: str, stream: bool, sentinel_kind: str, provider: FakeProvider, module_broker: EmbeddedBroker,
    topic: str, spool_dir: Path,
) -> None:  # fmt: skip
    kind, model, finish = APIS[api]
    made = sentinel.AsyncClient if sentinel_kind == "AsyncClient" else sentinel.Client
    client = made(brokers=[module_broker.bootstrap_servers], topic=topic, spool_dir=spool_dir, **QUICK_RETRIES)
    try:
        llm = client.instrument(llm_client(provider, kind, is_async=True), service="async-api")
        with _tracer.start_as_current_span("request") as span:
            assert await acall(llm, api, stream) == ANSWER
        flushed = client.flush(15)
        assert await flushed if isinstance(client, sentinel.AsyncClient) else flushed  # type: ignore[misc]
    finally:
        closed = client.close()
        if isinstance(client, sentinel.AsyncClient):
            await closed  # type: ignore[misc]
    (event,) = read_events(module_broker, topic)
    check_event(event, service="async-api", model=f"{model}-2026-01-01", finish_reason=finish, ids=span_ids(span))


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("api", ["chat", "responses", "messages", "messages.stream"])
def test_an_api_error_is_tracked_and_reraised_unchanged(
    api: str, status: int, provider: FakeProvider, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    kind, model, _ = APIS[api]
    library = openai if kind == "openai" else anthropic
    expected = library.RateLimitError if status == 429 else library.InternalServerError
    llm = capturing_client.instrument(llm_client(provider, kind, is_async=False), service="chat-api")
    provider.fail(status)
    with _tracer.start_as_current_span("request") as span, pytest.raises(expected) as raised:
        call(llm, api, stream=False)
    assert raised.value.status_code == status
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service="chat-api", model=model, response="", tokens=(0, 0), finish_reason="error",
                errors=[f"{kind}.{expected.__name__}: Error code: {status}"], ids=span_ids(span))  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize(("api", "stream"), [("chat", False), ("responses", True), ("messages", True),
                                             ("messages.stream", True)])  # fmt: skip
async def test_an_async_api_error_is_tracked_and_reraised(
    api: str, stream: bool, status: int, provider: FakeProvider, capturing_client: sentinel.Client,
    module_broker: EmbeddedBroker, topic: str,
) -> None:  # fmt: skip
    kind, model, _ = APIS[api]
    library = openai if kind == "openai" else anthropic
    expected = library.RateLimitError if status == 429 else library.InternalServerError
    llm = capturing_client.instrument(llm_client(provider, kind, is_async=True), service="async-api")
    provider.fail(status)
    with _tracer.start_as_current_span("request") as span, pytest.raises(expected):
        await acall(llm, api, stream)
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service="async-api", model=model, response="", tokens=(0, 0), finish_reason="error",
                errors=[f"{kind}.{expected.__name__}: Error code: {status}"], ids=span_ids(span))  # fmt: skip


def helper_call(llm: Any, helper: str) -> str:
    if helper == "chat.completions.stream":
        with llm.chat.completions.stream(model="gpt-4o", messages=OPENAI_MESSAGES) as events:
            return "".join(e.delta for e in events if e.type == "content.delta")
    if helper == "responses.stream":
        with llm.responses.stream(model="gpt-4o", instructions=SYSTEM, input=QUESTION) as events:
            return "".join(e.delta for e in events if e.type == "response.output_text.delta")
    if helper == "chat.completions.parse":
        return str(llm.chat.completions.parse(model="gpt-4o", messages=OPENAI_MESSAGES).choices[0].message.content)
    return str(llm.responses.parse(model="gpt-4o", instructions=SYSTEM, input=QUESTION).output_text)


@pytest.mark.parametrize(
    "helper", ["chat.completions.stream", "responses.stream", "chat.completions.parse", "responses.parse"]
)
def test_the_openai_helpers_are_tracked(
    helper: str, provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    assert helper_call(llm, helper) == ANSWER
    (event,) = delivered(capturing_client, module_broker, topic)
    check_event(event, service="chat-api", model="gpt-4o-2026-01-01")


# -- streams: how they end -----------------------------------------------------------------------


def test_a_stream_that_fails_midway_tracks_the_text_so_far_and_the_error(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    provider.answer(chunks=3, break_after=2)
    seen: list[str | None] = []

    def read() -> None:
        for chunk in llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=True):
            seen.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError):  # the library's own error, as without instrumentation
        read()
    (event,) = delivered(capturing_client, module_broker, topic)
    assert event["response"]["text"] == "".join(seen[1:]) != ""
    assert event["response"]["finish_reason"] == "error"
    assert len(event["errors"]) == 1


def test_a_stream_closed_early_tracks_the_text_so_far(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    provider.answer(chunks=5)
    with llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=True) as stream:
        first, second = next(stream), next(stream)
    assert stream.response.is_closed
    (event,) = delivered(capturing_client, module_broker, topic)
    assert event["response"]["text"] == (first.choices[0].delta.content or "") + second.choices[0].delta.content
    assert event["response"]["finish_reason"] == "incomplete"
    assert event["errors"] == []


def test_a_stream_dropped_unfinished_is_tracked_when_collected(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "anthropic", is_async=False), service="chat-api")
    for _ in llm.messages.create(model="claude-x", max_tokens=64, messages=ANTHROPIC_MESSAGES, stream=True):
        break  # the application stops reading and drops the stream
    (event,) = delivered(capturing_client, module_broker, topic)
    assert event["response"]["finish_reason"] == "incomplete"
    assert event["prompt"]["tokens"] == 12


def test_the_event_is_timed_from_the_calls_start_not_its_end(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    stream = llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=True)
    created = datetime.now(UTC)  # the call started before this; the stream is read after it
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == ANSWER
    (event,) = delivered(capturing_client, module_broker, topic)
    assert datetime.fromisoformat(event["timestamp"]) <= created


def test_a_stream_keeps_the_span_ids_of_when_it_began_not_of_where_it_ends(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    stream = llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=True)  # no span current
    with _tracer.start_as_current_span("later work"):
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == ANSWER
    (event,) = delivered(capturing_client, module_broker, topic)
    assert "trace_id" not in event
    assert "span_id" not in event


def test_the_caller_sees_the_chunks_it_would_see_uninstrumented(
    provider: FakeProvider, capturing_client: sentinel.Client
) -> None:
    def chunks(llm: Any, **options: Any) -> list[dict[str, Any]]:
        stream = llm.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=True, **options)
        return [chunk.model_dump(exclude={"created"}) for chunk in stream]

    plain = llm_client(provider, "openai", is_async=False)
    instrumented = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    assert chunks(instrumented) == chunks(plain)  # the usage chunk it asked for is not shown
    assert provider.requests[-2]["stream_options"] == {"include_usage": True}
    with_usage = {"stream_options": {"include_usage": True}}
    assert chunks(instrumented, **with_usage) == chunks(plain, **with_usage)  # asked for by the caller: shown
    stream = instrumented.chat.completions.create(model="gpt-4o", messages=OPENAI_MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)


def test_a_caller_who_declines_usage_is_not_overruled(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api")
    options = {"include_usage": False}
    assert (
        "".join(
            chunk.choices[0].delta.content or ""
            for chunk in llm.chat.completions.create(
                model="gpt-4o", messages=OPENAI_MESSAGES, stream=True, stream_options=options
            )
        )
        == ANSWER
    )
    assert provider.requests[-1]["stream_options"] == options
    (event,) = delivered(capturing_client, module_broker, topic)
    assert (event["prompt"]["tokens"], event["response"]["tokens"]) == (0, 0)
    assert event["response"]["text"] == ANSWER


# -- options, copies, refusals -----------------------------------------------------------------------


def test_capture_content_false_keeps_the_text_out(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api",
                                     capture_content=False)  # fmt: skip
    call(llm, "chat", stream=True)
    provider.fail(429)
    with pytest.raises(openai.RateLimitError):
        call(llm, "chat", stream=False)
    ok, failed = delivered(capturing_client, module_broker, topic, count=2)
    check_event(ok, service="chat-api", model="gpt-4o-2026-01-01", prompt="", response="")
    check_event(failed, service="chat-api", model="gpt-4o", prompt="", response="", tokens=(0, 0),
                finish_reason="error", errors=["openai.RateLimitError"])  # fmt: skip


def test_prices_defaults_and_before_send_apply(
    provider: FakeProvider, module_broker: EmbeddedBroker, topic: str, spool_dir: Path
) -> None:
    def before_send(event: sentinel.TelemetryEvent) -> sentinel.TelemetryEvent:
        return event.model_copy(update={"metadata": {**event.metadata, "hooked": "yes"}})

    with sentinel.Client(brokers=[module_broker.bootstrap_servers], topic=topic, spool_dir=spool_dir,
                         before_send=before_send, **QUICK_RETRIES) as client:  # fmt: skip
        llm = client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api",
                                prices={"gpt-4o": (2.5, 10.0)}, metadata={"team": "search"})  # fmt: skip
        call(llm, "chat", stream=False)
        (event,) = delivered(client, module_broker, topic)
    assert event["cost_usd"] == pytest.approx((12 * 2.5 + 7 * 10.0) / 1000)  # priced without the date suffix
    assert event["metadata"] == {"team": "search", "provider": "openai", "operation": "chat", "hooked": "yes"}


def test_copies_made_with_with_options_are_instrumented_and_uninstrument_undoes_it(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    from sentinel_durable.integrations.instrument import uninstrument

    llm = capturing_client.instrument(llm_client(provider, "anthropic", is_async=False), service="chat-api")
    call(llm.with_options(timeout=30), "messages", stream=False)
    uninstrument(llm)
    call(llm, "messages", stream=False)
    other = llm_client(provider, "anthropic", is_async=False)  # never instrumented: the class is untouched
    call(other, "messages", stream=False)
    (event,) = delivered(capturing_client, module_broker, topic)
    assert event["prompt"]["text"] == PROMPT_TEXT
    assert capturing_client.stats().spooled == 0
    assert capturing_client.stats().delivered == 1


def test_instrumenting_again_replaces_the_first_instrumentation(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str
) -> None:
    llm = llm_client(provider, "openai", is_async=False)
    capturing_client.instrument(llm, service="first")
    capturing_client.instrument(llm, service="second")
    call(llm, "chat", stream=False)
    (event,) = delivered(capturing_client, module_broker, topic)
    assert event["service_name"] == "second"


def test_telemetry_that_fails_is_counted_and_logged_once_and_never_breaks_the_call(
    provider: FakeProvider, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = sentinel.Client(brokers=["127.0.0.1:9"], topic="refused", spool_dir=spool_dir)
    llm = client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api",
                            metadata={"attempt": 1})  # fmt: skip  # not a string: every event is invalid
    with caplog.at_level(logging.DEBUG, logger="sentinel_durable.integrations"):
        assert call(llm, "chat", stream=False) == ANSWER
        assert call(llm, "chat", stream=True) == ANSWER
        client.close(timeout=0)
        assert call(llm, "responses", stream=False) == ANSWER  # closed: refused, counted
    assert client.stats().capture_errors == 3
    # the flusher's and transport's loggers may warn that Kafka is unreachable meanwhile: not ours to count
    ours = [r for r in caplog.records if not r.name.startswith(DELIVERY_LOGGERS)]
    warnings = [r for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "capture_errors" in warnings[0].getMessage()
    assert QUESTION not in caplog.text
    assert ANSWER not in caplog.text


def test_instrument_refuses_what_it_cannot_instrument(capturing_client: sentinel.Client) -> None:
    with pytest.raises(TypeError, match=r"openai\.OpenAI"):
        capturing_client.instrument(object(), service="svc")
    with pytest.raises(TypeError, match="service"):
        capturing_client.instrument(openai.OpenAI(api_key="k"), service="")
    with pytest.raises(TypeError, match="unexpected keyword argument 'prompt'"):
        capturing_client.instrument(openai.OpenAI(api_key="k"), service="svc", prompt="x")
    with pytest.raises(sentinel.ConfigError, match=r"^prices\['gpt-4o'\]=2\.5: must be \(input, output\)"):
        capturing_client.instrument(openai.OpenAI(api_key="k"), service="svc", prices={"gpt-4o": 2.5})
    with pytest.raises(sentinel.ConfigError, match="model name must be a non-empty string"):
        capturing_client.instrument(openai.OpenAI(api_key="k"), service="svc", prices={1: (1.0, 2.0)})


def test_a_prices_callable_that_fails_costs_the_event_its_cost_not_the_event(
    provider: FakeProvider, capturing_client: sentinel.Client, module_broker: EmbeddedBroker, topic: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def prices(model: str, tokens_in: int, tokens_out: int) -> float:
        raise KeyError(model)

    llm = capturing_client.instrument(llm_client(provider, "openai", is_async=False), service="chat-api", prices=prices)
    call(llm, "chat", stream=False)
    call(llm, "chat", stream=False)
    first, second = delivered(capturing_client, module_broker, topic, count=2)
    assert first["cost_usd"] == second["cost_usd"] == 0.0
    assert capturing_client.stats().capture_errors == 0
    assert len([r for r in caplog.records if "prices callable failed" in r.getMessage()]) == 1


def test_a_sync_llm_client_with_an_async_client(
    provider: FakeProvider, module_broker: EmbeddedBroker, topic: str, spool_dir: Path
) -> None:
    client = sentinel.AsyncClient(brokers=[module_broker.bootstrap_servers], topic=topic, spool_dir=spool_dir)
    llm = client.instrument(llm_client(provider, "openai", is_async=False), service="mixed")
    assert call(llm, "chat", stream=True) == ANSWER  # from a thread without a loop
    assert asyncio.run(client.flush(15))
    asyncio.run(client.close())
    (event,) = read_events(module_broker, topic)
    check_event(event, service="mixed", model="gpt-4o-2026-01-01")


# -- the optional packages -------------------------------------------------------------------------


def test_importing_the_package_imports_no_integration_library_and_the_exporter_names_its_extra() -> None:
    from conftest import run_python

    result = run_python(
        """
        import sys, tempfile
        import sentinel_durable
        from sentinel_durable.integrations import capture, instrument, llm_calls, streams, span_reading
        with sentinel_durable.Client(brokers=["127.0.0.1:1"], topic="t", spool_dir=tempfile.mkdtemp()) as client:
            client.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0)
        print(sorted({name.split(".")[0] for name in sys.modules} & {"openai", "anthropic", "opentelemetry"}))
        sys.modules["opentelemetry.sdk"] = None  # as if opentelemetry-sdk were not installed
        try:
            sentinel_durable.SentinelSpanExporter
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    imported, refusal = result.stdout.strip().splitlines()
    assert imported == "[]"
    assert "pip install 'sentinel-durable[otel]'" in refusal
