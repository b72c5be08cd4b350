"""Observation (the LLM-call helpers): one event per observed call, read back from a real broker."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

import sentinel_durable as sentinel
from sentinel_durable.aio import AsyncClient
from sentinel_durable.observe import (
    Observation,
    Usage,
    current_observation,
    usage_from_anthropic,
    usage_from_openai,
)
from sentinel_durable.testing import EmbeddedBroker


@pytest_asyncio.fixture
async def aclient(broker: EmbeddedBroker, topic: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=tmp_path / "aspool") as client:
        yield client


def delivered(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str, expected: int
) -> list[sentinel.TelemetryEvent]:
    assert client.flush(timeout=30)
    return [sentinel.TelemetryEvent.from_json(record.value) for record in broker.read_topic(topic, expected=expected)]


async def adelivered(client: AsyncClient, broker: EmbeddedBroker, topic: str, expected: int) -> list[Any]:
    assert await client.flush(timeout=30)
    records = await asyncio.to_thread(broker.read_topic, topic, expected)
    return [sentinel.TelemetryEvent.from_json(record.value) for record in records]


def openai_completion(content: str | None = "Paris.", finish_reason: str = "stop") -> SimpleNamespace:
    return SimpleNamespace(
        id="chatcmpl-1",
        choices=[SimpleNamespace(index=0, finish_reason=finish_reason, message=SimpleNamespace(content=content))],
        usage=SimpleNamespace(prompt_tokens=12, completion_tokens=3, total_tokens=15),
    )


def anthropic_message() -> SimpleNamespace:
    return SimpleNamespace(
        id="msg_1",
        content=[
            SimpleNamespace(type="text", text="The capital "),
            SimpleNamespace(type="tool_use", id="toolu_1", name="lookup", input={}),
            SimpleNamespace(type="text", text="is Paris."),
        ],
        stop_reason="end_turn",
        usage=SimpleNamespace(input_tokens=20, output_tokens=6),
    )


# --- the context manager -------------------------------------------------------------------------


def test_context_manager_tracks_one_event_with_what_was_set(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    with Observation(client, service="chat", model="gpt-4o", prompt="Capital of France?") as observation:
        observation.set_prompt("Capital of France?", tokens=8)
        observation.set_response("Paris.", tokens=2, finish_reason="length")
        observation.set_cost(0.0042)
        observation.add_metadata("region", "eu")
    (event,) = delivered(client, broker, topic, 1)
    assert event.event_id == observation.event_id
    assert (event.service_name, event.model) == ("chat", "gpt-4o")
    assert (event.prompt.text, event.prompt.tokens) == ("Capital of France?", 8)
    assert (event.response.text, event.response.tokens, event.response.finish_reason) == ("Paris.", 2, "length")
    assert event.cost_usd == 0.0042
    assert event.metadata == {"region": "eu"}
    assert event.errors == []
    assert event.latency_ms > 0
    assert event.latency_ms == observation.latency_ms


def test_an_exception_is_recorded_as_an_error_and_re_raised(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    with pytest.raises(ConnectionResetError, match="upstream hung up"), Observation(client, service="chat", model="m"):
        raise ConnectionResetError("upstream hung up")
    (event,) = delivered(client, broker, topic, 1)
    assert event.errors == ["ConnectionResetError: upstream hung up"]
    assert event.response.finish_reason == "error"
    assert event.latency_ms > 0


def test_extra_track_fields_are_passed_through(client: sentinel.Client, broker: EmbeddedBroker, topic: str) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with Observation(
        client, service="chat", model="m", trace_id=trace_id, span_id=span_id, metadata={"team": "search"}
    ) as observation:
        observation.add_metadata("region", "eu")
    (event,) = delivered(client, broker, topic, 1)
    assert (event.trace_id, event.span_id) == (trace_id, span_id)
    assert event.metadata == {"team": "search", "region": "eu"}


def test_a_bad_value_raises_validation_error_on_exit(client: sentinel.Client) -> None:
    with pytest.raises(sentinel.ValidationError) as caught, Observation(client, service="chat", model="m") as obs:
        obs.set_tokens(prompt=-1)
    assert caught.value.field == "prompt.tokens"
    assert obs.event_id is None


def test_the_blocks_own_exception_wins_over_a_tracking_failure(
    client: sentinel.Client, caplog: pytest.LogCaptureFixture
) -> None:
    def call_that_fails() -> None:
        with Observation(client, service="chat", model="m") as observation:
            observation.set_tokens(completion=-1)  # tracking will fail too
            raise KeyError("boom")

    with pytest.raises(KeyError):
        call_that_fails()
    assert "could not track" in caplog.text


def test_an_observation_is_entered_once(client: sentinel.Client) -> None:
    observation = Observation(client, service="chat", model="m")
    with observation:
        pass
    with pytest.raises(RuntimeError), observation:
        pass


def test_unknown_fields_are_a_type_error(client: sentinel.Client) -> None:
    with pytest.raises(TypeError, match="tokens"):
        Observation(client, service="chat", model="m", tokens=3)


def test_current_observation_outside_one_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        current_observation()


# --- the decorator -------------------------------------------------------------------------------


def test_decorated_function_tracks_one_event_per_call(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    @Observation(client, service="chat", model="gpt-4o", metadata={"feature": "faq"})
    def answer(question: str) -> str:
        current_observation().set_prompt(question, tokens=5).set_cost(0.001)
        return "Paris." if "France" in question else "Rome."

    assert answer("Capital of France?") == "Paris."
    assert answer("Capital of Italy?") == "Rome."
    assert answer.__name__ == "answer"
    events = delivered(client, broker, topic, 2)
    assert sorted(event.response.text for event in events) == ["Paris.", "Rome."]
    assert sorted(event.prompt.text for event in events) == ["Capital of France?", "Capital of Italy?"]
    for event in events:
        assert event.latency_ms > 0
        assert (event.prompt.tokens, event.cost_usd) == (5, 0.001)
        assert event.metadata == {"feature": "faq"}
    assert len({event.event_id for event in events}) == 2


def test_decorated_function_exception_is_recorded_and_re_raised(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    @Observation(client, service="chat", model="m")
    def fail() -> str:
        raise TimeoutError("model took too long")

    with pytest.raises(TimeoutError):
        fail()
    (event,) = delivered(client, broker, topic, 1)
    assert event.errors == ["TimeoutError: model took too long"]


def test_decorated_function_returning_an_openai_completion_is_read(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    @Observation(client, service="chat", model="gpt-4o", prompt="Capital of France?")
    def ask() -> SimpleNamespace:
        return openai_completion()

    ask()
    (event,) = delivered(client, broker, topic, 1)
    assert (event.prompt.tokens, event.response.tokens) == (12, 3)
    assert (event.response.text, event.response.finish_reason) == ("Paris.", "stop")


def test_what_the_function_set_wins_over_its_result(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    @Observation(client, service="chat", model="m")
    def ask() -> SimpleNamespace:
        current_observation().set_response("redacted")
        return openai_completion()

    ask()
    (event,) = delivered(client, broker, topic, 1)
    assert (event.response.text, event.response.tokens) == ("redacted", 3)


@pytest.mark.asyncio
async def test_decorated_async_function_with_a_sync_client(
    client: sentinel.Client, broker: EmbeddedBroker, topic: str
) -> None:
    @Observation(client, service="chat", model="m")
    async def ask() -> str:
        await asyncio.sleep(0.01)
        return "Paris."

    assert await ask() == "Paris."
    (event,) = delivered(client, broker, topic, 1)
    assert event.response.text == "Paris."
    assert event.latency_ms >= 10


# --- with an AsyncClient -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_with_and_async_decorator_with_an_async_client(
    aclient: AsyncClient, broker: EmbeddedBroker, topic: str
) -> None:
    async with aclient.observe(service="chat", model="m", prompt="q1") as observation:
        observation.record_anthropic(anthropic_message())

    @aclient.observe(service="chat", model="m", prompt="q2")
    async def ask() -> str:
        return "Rome."

    assert await ask() == "Rome."
    events = {event.prompt.text: event for event in await adelivered(aclient, broker, topic, 2)}
    assert events["q1"].event_id == observation.event_id
    assert (events["q1"].response.text, events["q1"].response.finish_reason) == ("The capital is Paris.", "end_turn")
    assert (events["q1"].prompt.tokens, events["q1"].response.tokens) == (20, 6)
    assert events["q2"].response.text == "Rome."
    assert all(event.latency_ms > 0 for event in events.values())


@pytest.mark.asyncio
async def test_async_decorator_records_an_exception(aclient: AsyncClient, broker: EmbeddedBroker, topic: str) -> None:
    @aclient.observe(service="chat", model="m")
    async def fail() -> str:
        raise ValueError("bad request")

    with pytest.raises(ValueError, match="bad request"):
        await fail()
    (event,) = await adelivered(aclient, broker, topic, 1)
    assert event.errors == ["ValueError: bad request"]
    assert event.response.finish_reason == "error"


def test_an_async_client_needs_async_with_and_async_functions(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    aclient = AsyncClient(brokers=[f"127.0.0.1:{port}"], spool_dir=tmp_path / "never-opened")
    with pytest.raises(TypeError, match="async with"), aclient.observe(service="chat", model="m"):
        pass
    with pytest.raises(TypeError, match="async def"):
        aclient.observe(service="chat", model="m")(lambda: "sync")


# --- the adapters ------------------------------------------------------------------------------------


def test_usage_from_openai() -> None:
    assert usage_from_openai(openai_completion()) == Usage(
        prompt_tokens=12, completion_tokens=3, finish_reason="stop", response_text="Paris."
    )


def test_usage_from_openai_tool_call_has_no_text() -> None:
    usage = usage_from_openai(openai_completion(content=None, finish_reason="tool_calls"))
    assert (usage.response_text, usage.finish_reason) == (None, "tool_calls")


def test_usage_from_openai_reads_a_dict_and_a_legacy_completion() -> None:
    as_dict = {
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    assert usage_from_openai(as_dict) == Usage(1, 2, "stop", "Hi")
    legacy = SimpleNamespace(choices=[SimpleNamespace(text="Hello", finish_reason="length")], usage=None)
    assert usage_from_openai(legacy) == Usage(None, None, "length", "Hello")


def test_usage_from_anthropic_joins_text_blocks() -> None:
    assert usage_from_anthropic(anthropic_message()) == Usage(
        prompt_tokens=20, completion_tokens=6, finish_reason="end_turn", response_text="The capital is Paris."
    )


def test_adapters_tolerate_missing_parts() -> None:
    assert usage_from_openai(SimpleNamespace()) == Usage()
    assert usage_from_anthropic(SimpleNamespace(content=None, usage=None, stop_reason=None)) == Usage()


def test_record_openai_fills_the_event(client: sentinel.Client, broker: EmbeddedBroker, topic: str) -> None:
    with Observation(client, service="chat", model="gpt-4o", prompt="Capital of France?") as observation:
        observation.record_openai(openai_completion(finish_reason="length"))
    (event,) = delivered(client, broker, topic, 1)
    assert (event.prompt.tokens, event.response.tokens) == (12, 3)
    assert (event.response.text, event.response.finish_reason) == ("Paris.", "length")


def test_client_observe_returns_an_observation(client: sentinel.Client, broker: EmbeddedBroker, topic: str) -> None:
    with client.observe(service="chat", model="gpt-4o", prompt="q") as observation:
        observation.set_response("a", tokens=1)
    (event,) = delivered(client, broker, topic, 1)
    assert (event.event_id, event.prompt.text, event.response.text) == (observation.event_id, "q", "a")
