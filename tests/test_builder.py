"""The fluent builder: every Go builder method, and errors only at build()."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from conftest import complete_builder
from wire_schema import parse_wire

import sentinel_durable as sentinel
from sentinel_durable.event import EventRules


def test_build_produces_the_wire_event() -> None:
    stamp = datetime(2026, 11, 27, 3, 21, 29, 541265, tzinfo=UTC)
    event_id = str(uuid.uuid4())
    event = (
        complete_builder()
        .add_metadata("region", "us-east-1")
        .trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
        .span_id("00f067aa0ba902b7")
        .add_error("rate limited once")
        .event_id(event_id)
        .timestamp(stamp)
        .build()
    )
    assert parse_wire(event.to_json()) == {
        "event_id": event_id,
        "timestamp": "2026-11-27T03:21:29.541265Z",
        "service_name": "svc",
        "model": "gpt-4",
        "prompt": {"text": "What is the capital of France?", "tokens": 8},
        "response": {"text": "Paris.", "tokens": 7, "finish_reason": "stop"},
        "latency_ms": 150.5,
        "cost_usd": 0.001,
        "metadata": {"region": "us-east-1"},
        "errors": ["rate limited once"],
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }


def test_embeddings_are_carried() -> None:
    event = (
        complete_builder().prompt_with_embedding("q", 1, [0.1, 0.2]).response_with_embedding("a", 2, "length", (0.3,))
    ).build()
    wire = parse_wire(event.to_json())
    assert wire["prompt"] == {"text": "q", "tokens": 1, "embedding": [0.1, 0.2]}
    assert wire["response"] == {"text": "a", "tokens": 2, "finish_reason": "length", "embedding": [0.3]}


def test_metadata_replaces_and_add_metadata_extends() -> None:
    builder = complete_builder().add_metadata("a", "1").metadata({"b": "2"}).add_metadata("c", "3")
    assert builder.build().metadata == {"b": "2", "c": "3"}


def test_errors_replaces_and_add_error_extends() -> None:
    builder = complete_builder().add_error("x").errors(["y"]).add_error("z")
    assert builder.build().errors == ["y", "z"]


@pytest.mark.parametrize(
    ("method", "field"),
    [("service", "service_name"), ("model", "model"), ("prompt", "prompt"), ("response", "response"),
     ("latency", "latency_ms")],
)  # fmt: skip
def test_build_names_the_missing_field(method: str, field: str) -> None:
    builder = sentinel.EventBuilder()
    for name, args in [("service", ("svc",)), ("model", ("m",)), ("prompt", ("p", 1)),
                       ("response", ("r", 1, "stop")), ("latency", (1.0,)), ("cost", (0.0,))]:  # fmt: skip
        if name != method:
            getattr(builder, name)(*args)
    with pytest.raises(sentinel.ValidationError) as caught:
        builder.build()
    assert caught.value.field == field
    assert caught.value.message == "is required"


def test_build_names_the_bad_field() -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        complete_builder().response("r", -2, "stop").build()
    assert (caught.value.field, caught.value.value) == ("response.tokens", -2)


def test_setters_never_raise_on_junk() -> None:
    builder = sentinel.EventBuilder().service(object()).metadata(42).add_metadata([1], {2})  # type: ignore[arg-type]
    with pytest.raises(sentinel.ValidationError) as caught:
        builder.build()
    assert caught.value.field in {"service_name", "metadata"}


def test_unhashable_metadata_key_is_a_validation_error() -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        complete_builder().add_metadata(["k"], "v").build()  # type: ignore[arg-type]
    assert caught.value.field == "metadata"


def test_each_build_gets_a_new_event_id_unless_one_is_set() -> None:
    builder = complete_builder()
    assert builder.build().event_id != builder.build().event_id
    fixed = str(uuid.uuid4())
    builder.event_id(fixed)
    assert builder.build().event_id == builder.build().event_id == fixed


def test_builder_applies_its_rules() -> None:
    builder = sentinel.EventBuilder(EventRules(max_text_length=20)).service("s").model("m")
    event = builder.prompt("p" * 100, 1).response("r", 1, "stop").latency(1).cost(0).build()
    assert len(event.prompt.text) == 20


def test_later_changes_to_the_builder_do_not_alter_a_built_event() -> None:
    builder = complete_builder().add_metadata("a", "1").add_error("e")
    event = builder.build()
    builder.add_metadata("b", "2").add_error("f")
    assert (event.metadata, event.errors) == ({"a": "1"}, ["e"])


def test_cost_defaults_to_zero_as_in_track() -> None:
    # Client.track defaults cost_usd=0.0; the builder agrees (it used to refuse "cost_usd: is required").
    event = sentinel.EventBuilder().service("s").model("m").prompt("p", 1).response("ok", 1, "stop").latency(1).build()
    assert event.cost_usd == 0.0
    parse_wire(event.to_json())


def test_repr_names_the_fields_set_and_the_size_of_text_not_the_text() -> None:
    builder = complete_builder().add_metadata("region", "private-value").add_error("private-error")
    shown = repr(builder)
    assert shown.startswith("<EventBuilder ")
    assert shown.endswith(">")
    for part in ("service_name='svc'", "model='gpt-4'", "latency_ms=150.5", "cost_usd=0.001",
                 "prompt=<text str of 30 characters, tokens=8>", "metadata=<1 entry>", "errors=<1 entry>"):  # fmt: skip
        assert part in shown, shown
    for private in ("capital of France", "Paris", "private-value", "private-error"):
        assert private not in shown
    assert repr(sentinel.EventBuilder()) == "<EventBuilder (empty)>"
