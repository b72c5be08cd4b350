"""Each rule of DESIGN §2 refuses bad input by field name and accepts its boundary values."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import valid_fields
from wire_schema import parse_wire

import sentinel_durable as sentinel
from sentinel_durable.event import TRUNCATION_MARKER, EventRules, validate_event

U32_MAX = 2**32 - 1


def refused(field: str, rules: EventRules | None = None, **overrides: Any) -> sentinel.ValidationError:
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(valid_fields(**overrides), rules or EventRules())
    assert caught.value.field == field, str(caught.value)
    return caught.value


def accepted(rules: EventRules | None = None, **overrides: Any) -> sentinel.TelemetryEvent:
    event = validate_event(valid_fields(**overrides), rules or EventRules())
    parse_wire(event.to_json())
    return event


# --- required fields ------------------------------------------------------------


@pytest.mark.parametrize("field", ["service_name", "model", "prompt", "response", "latency_ms", "cost_usd"])
def test_missing_required_field_is_refused_by_name(field: str) -> None:
    fields = valid_fields()
    del fields[field]
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(fields)
    assert caught.value.field == field
    assert caught.value.message == "is required"


@pytest.mark.parametrize(("field", "inner"), [("prompt", "text"), ("prompt", "tokens"), ("response", "finish_reason")])
def test_missing_nested_field_is_refused_by_dotted_name(field: str, inner: str) -> None:
    fields = valid_fields()
    del fields[field][inner]
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(fields)
    assert caught.value.field == f"{field}.{inner}"


def test_unknown_field_is_refused_not_emitted() -> None:
    refused("colour", colour="blue")
    refused("prompt.colour", prompt={"text": "x", "tokens": 1, "colour": "blue"})


# --- names -------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["service_name", "model"])
def test_empty_name_is_refused(field: str) -> None:
    refused(field, **{field: ""})


@pytest.mark.parametrize("field", ["service_name", "model"])
def test_single_character_name_is_accepted(field: str) -> None:
    assert getattr(accepted(**{field: "a"}), field) == "a"


@pytest.mark.parametrize("field", ["service_name", "model"])
def test_name_that_is_not_a_string_is_refused(field: str) -> None:
    refused(field, **{field: b"svc"})
    refused(field, **{field: 42})


# --- numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["latency_ms", "cost_usd"])
@pytest.mark.parametrize("bad", [-0.001, -1, math.nan, math.inf, -math.inf])
def test_negative_or_non_finite_number_is_refused(field: str, bad: float) -> None:
    refused(field, **{field: bad})


@pytest.mark.parametrize("field", ["latency_ms", "cost_usd"])
@pytest.mark.parametrize("bad", [True, "1.5", None])
def test_number_of_wrong_type_is_refused(field: str, bad: Any) -> None:
    refused(field, **{field: bad})


@pytest.mark.parametrize("field", ["latency_ms", "cost_usd"])
@pytest.mark.parametrize("good", [0, 0.0, 5e-324, 1e308, 150])
def test_zero_and_huge_finite_numbers_are_accepted(field: str, good: float) -> None:
    assert getattr(accepted(**{field: good}), field) == good


# --- tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["prompt", "response"])
@pytest.mark.parametrize("good", [0, 1, U32_MAX])
def test_token_boundaries_are_accepted(part: str, good: int) -> None:
    info = {**valid_fields()[part], "tokens": good}
    assert getattr(accepted(**{part: info}), part).tokens == good


@pytest.mark.parametrize("part", ["prompt", "response"])
@pytest.mark.parametrize("bad", [-1, U32_MAX + 1, 10**30, True, False, 1.0, "8", None])
def test_tokens_outside_u32_or_not_integers_are_refused(part: str, bad: Any) -> None:
    info = {**valid_fields()[part], "tokens": bad}
    refused(f"{part}.tokens", **{part: info})


# --- text --------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["prompt", "response"])
def test_text_exactly_at_the_limit_is_kept_whole(part: str) -> None:
    text = "x" * 50
    info = {**valid_fields()[part], "text": text}
    for truncate in (True, False):
        event = accepted(EventRules(max_text_length=50, truncate_text=truncate), **{part: info})
        assert getattr(event, part).text == text


@pytest.mark.parametrize("part", ["prompt", "response"])
def test_text_over_the_limit_is_refused_when_truncation_is_off(part: str) -> None:
    info = {**valid_fields()[part], "text": "x" * 51}
    error = refused(f"{part}.text", EventRules(max_text_length=50, truncate_text=False), **{part: info})
    assert "max_text_length=50" in error.message
    assert "x" * 51 not in str(error), "user text must not be copied into the message"


@pytest.mark.parametrize("limit", [1, len(TRUNCATION_MARKER), len(TRUNCATION_MARKER) + 1, 50, 100_000])
def test_truncated_text_never_exceeds_the_limit_marker_included(limit: int) -> None:
    text = "é" * (limit + 10)
    event = accepted(EventRules(max_text_length=limit), prompt={"text": text, "tokens": 1})
    assert len(event.prompt.text) == limit
    assert text.startswith(event.prompt.text.removesuffix(TRUNCATION_MARKER))
    if limit > len(TRUNCATION_MARKER):
        assert event.prompt.text.endswith(TRUNCATION_MARKER)


def test_default_limit_is_100000_characters() -> None:
    assert len(accepted(prompt={"text": "y" * 100_000, "tokens": 1}).prompt.text) == 100_000
    assert len(accepted(prompt={"text": "y" * 100_001, "tokens": 1}).prompt.text) == 100_000


@pytest.mark.parametrize(
    "field", ["service_name", "model", "prompt.text", "response.text", "response.finish_reason", "trace_id"]
)
def test_lone_surrogate_is_refused_wherever_it_appears(field: str) -> None:
    fields = valid_fields(trace_id="t")
    target = fields
    *parents, leaf = field.split(".")
    for parent in parents:
        target = target[parent]
    target[leaf] = "ok \ud800 not ok"
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(fields)
    assert caught.value.field == field
    assert "surrogate" in caught.value.message


@pytest.mark.parametrize(
    ("field", "overrides", "message"),
    [
        ("prompt.text", {"prompt": {"text": "secret \ud800 text", "tokens": 1}},
         "is not valid Unicode: lone surrogate at position 7"),
        ("metadata.region", {"metadata": {"region": "eu\udfff"}}, "is not valid Unicode: lone surrogate at position 2"),
        ("metadata", {"metadata": {"k\ud800": "v"}},
         "has an invalid key: is not valid Unicode: lone surrogate at position 1"),
        ("errors.0", {"errors": ["\ud800"]}, "is not valid Unicode: lone surrogate at position 0"),
        ("service_name", {"service_name": ""}, "must not be empty (LLM-Sentinel drops such events)"),
        ("service_name", {"service_name": "s" * 300}, "is 300 characters, over the 255 LLM-Sentinel accepts"),
        ("latency_ms", {"latency_ms": -1.0}, "must be >= 0 (LLM-Sentinel drops negative values)"),
        ("cost_usd", {"cost_usd": -1.0}, "must be >= 0 (LLM-Sentinel drops negative values)"),
        ("event_id", {"event_id": "not-a-uuid"}, "must be a hyphenated UUID like 123e4567-e89b-12d3-a456-426614174000"),
        ("event_id", {"event_id": "\ud800"}, "must be a hyphenated UUID like 123e4567-e89b-12d3-a456-426614174000"),
    ],
)  # fmt: skip
def test_rules_checked_inside_pydantic_core_keep_their_wording_and_hide_the_text(
    field: str, overrides: dict[str, Any], message: str
) -> None:
    # These rules are pydantic-core constraints (no Python call per string); the errors are ours.
    error = refused(field, **overrides)
    assert error.message == message
    assert "secret" not in str(error)
    assert "eu\udfff" not in str(error)


def test_non_ascii_text_is_accepted_and_encoded_as_utf8() -> None:
    event = accepted(prompt={"text": "日本語 🚀 café", "tokens": 3})
    assert parse_wire(event.to_json())["prompt"]["text"] == "日本語 🚀 café"


# --- metadata and errors -------------------------------------------------------------


def test_metadata_values_must_be_strings() -> None:
    refused("metadata.region", metadata={"region": 1})
    refused("metadata.region", metadata={"region": None})


def test_metadata_keys_must_be_strings() -> None:
    error = refused("metadata", metadata={1: "a"})
    assert "key" in error.message


def test_metadata_must_be_a_mapping() -> None:
    refused("metadata", metadata=[("a", "b")])


def test_metadata_with_surrogate_key_is_refused() -> None:
    refused("metadata", metadata={"\udc80": "a"})


def test_errors_must_be_a_list_of_strings() -> None:
    refused("errors.1", errors=["ok", 2])
    refused("errors", errors="not a list")


def test_empty_metadata_and_errors_are_emitted_not_null() -> None:
    wire = parse_wire(accepted().to_json())
    assert wire["metadata"] == {}
    assert wire["errors"] == []


# --- ids and timestamp --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", "abc", "123e4567e89b12d3a456426614174000", "{123e4567-e89b-12d3-a456-426614174000}"]
)
def test_event_id_must_be_a_hyphenated_uuid(bad: str) -> None:
    refused("event_id", event_id=bad)


def test_event_id_accepts_uuid_objects_and_strings() -> None:
    value = uuid.uuid4()
    assert accepted(event_id=value).event_id == str(value)
    assert accepted(event_id=str(value).upper()).event_id == str(value).upper()


def test_event_id_is_generated_and_unique() -> None:
    assert accepted().event_id != accepted().event_id


@pytest.mark.parametrize("field", ["trace_id", "span_id"])
def test_trace_and_span_ids_must_be_non_empty_when_set(field: str) -> None:
    refused(field, **{field: ""})
    assert getattr(accepted(**{field: "a"}), field) == "a"


@pytest.mark.parametrize("field", ["trace_id", "span_id"])
def test_unset_trace_and_span_ids_are_omitted(field: str) -> None:
    assert field not in parse_wire(accepted().to_json())
    assert field not in parse_wire(accepted(**{field: None}).to_json())


def test_naive_timestamp_is_taken_as_utc() -> None:
    event = accepted(timestamp=datetime(2026, 11, 27, 3, 21, 29, 541265))
    assert parse_wire(event.to_json())["timestamp"] == "2026-11-27T03:21:29.541265Z"


def test_aware_timestamp_is_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = accepted(timestamp=datetime(2026, 11, 27, 5, 21, 29, tzinfo=plus_two))
    assert parse_wire(event.to_json())["timestamp"] == "2026-11-27T03:21:29Z"
    assert event.timestamp.utcoffset() == timedelta(0)


def test_timestamp_keeps_four_digit_year() -> None:
    event = accepted(timestamp=datetime(5, 1, 2, tzinfo=UTC))
    assert parse_wire(event.to_json())["timestamp"] == "0005-01-02T00:00:00Z"


def test_timestamp_out_of_range_in_utc_is_refused() -> None:
    refused("timestamp", timestamp=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))


def test_timestamp_must_be_a_datetime() -> None:
    refused("timestamp", timestamp="2026-11-27T03:21:29Z")
    refused("timestamp", timestamp=1764213689)


# --- embeddings -----------------------------------------------------------------------


def test_embedding_is_emitted_only_when_set() -> None:
    wire = parse_wire(accepted(prompt={"text": "x", "tokens": 1, "embedding": [0.5, -1, 2e10]}).to_json())
    assert wire["prompt"]["embedding"] == [0.5, -1.0, 2e10]
    assert "embedding" not in wire["response"]


def test_embedding_accepts_tuples() -> None:
    assert accepted(prompt={"text": "x", "tokens": 1, "embedding": (1.0, 2.0)}).prompt.embedding == [1.0, 2.0]


@pytest.mark.parametrize("bad", [[math.nan], [math.inf], ["1.0"], [True], "1.0", [[1.0]]])
def test_embedding_must_be_finite_numbers(bad: Any) -> None:
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(valid_fields(prompt={"text": "x", "tokens": 1, "embedding": bad}))
    assert caught.value.field in {"prompt.embedding", "prompt.embedding.0"}


# --- enable_validation=False ------------------------------------------------------------

LAX = EventRules(enable_validation=False)


def test_sdk_rules_are_skipped_when_validation_is_off() -> None:
    event = validate_event(valid_fields(model="", trace_id="", span_id=""), LAX)
    assert (event.model, event.trace_id, event.span_id) == ("", "", "")


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("latency_ms", {"latency_ms": -5.0}),
        ("cost_usd", {"cost_usd": -0.01}),
        ("service_name", {"service_name": ""}),
        ("service_name", {"service_name": "s" * 256}),
        ("prompt.text", {"prompt": {"text": "x" * 100_001, "tokens": 1}}),
        ("response.text", {"response": {"text": "x" * 100_001, "tokens": 1, "finish_reason": "stop"}}),
    ],
)
def test_rules_of_sentinels_ingestion_hold_even_when_validation_is_off(field: str, overrides: dict[str, Any]) -> None:
    # LLM-Sentinel's Kafka consumer runs serde_json and then its TelemetryEvent's validate(): latency and
    # cost >= 0, service_name of 1..255 characters; its text limit is 100,000 characters.
    rules = EventRules(truncate_text=False, enable_validation=False)
    error = refused(field, rules, **overrides)
    assert "Sentinel" in error.message


def test_a_255_character_service_name_is_accepted() -> None:
    assert accepted(service_name="s" * 255).service_name == "s" * 255


def test_long_text_is_kept_when_validation_and_truncation_are_off() -> None:
    rules = EventRules(max_text_length=5, truncate_text=False, enable_validation=False)
    assert validate_event(valid_fields(prompt={"text": "x" * 10, "tokens": 1}), rules).prompt.text == "x" * 10


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("service_name", {"service_name": None}),
        ("latency_ms", {"latency_ms": math.nan}),
        ("cost_usd", {"cost_usd": "free"}),
        ("prompt.tokens", {"prompt": {"text": "x", "tokens": -1}}),
        ("prompt.text", {"prompt": {"text": "\ud800", "tokens": 1}}),
        ("metadata.k", {"metadata": {"k": 1}}),
        ("event_id", {"event_id": "not-a-uuid"}),
    ],
)
def test_type_rules_hold_even_when_validation_is_off(field: str, overrides: dict[str, Any]) -> None:
    refused(field, LAX, **overrides)


def test_json_has_every_required_field_when_validation_is_off() -> None:
    event = validate_event(valid_fields(model=""), LAX)
    document = event.model_dump(mode="json")
    assert set(document) >= {"event_id", "timestamp", "metadata", "errors", "prompt", "response"}


# --- re-validation -----------------------------------------------------------------------


def test_event_changed_after_build_is_checked_again() -> None:
    event = accepted()
    event.latency_ms = -1.0
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(event)
    assert caught.value.field == "latency_ms"
    event.latency_ms = 1.0
    event.prompt.tokens = -3
    with pytest.raises(sentinel.ValidationError) as caught:
        validate_event(event)
    assert caught.value.field == "prompt.tokens"


def test_revalidation_returns_an_equal_copy() -> None:
    event = accepted(metadata={"a": "b"})
    again = validate_event(event)
    assert again == event
    assert again is not event


def test_revalidation_applies_the_senders_text_limit() -> None:
    event = accepted(prompt={"text": "z" * 100, "tokens": 1})
    assert len(validate_event(event, EventRules(max_text_length=40)).prompt.text) == 40
    with pytest.raises(sentinel.ValidationError):
        validate_event(event, EventRules(max_text_length=40, truncate_text=False))
