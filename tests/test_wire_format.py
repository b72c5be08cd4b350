"""Property tests: valid events serialise to the DESIGN §2 JSON and parse back equal;
junk given to the builder builds a valid event or raises our ValidationError, nothing else."""

from __future__ import annotations

import json
import math
from datetime import UTC
from typing import Any

import pytest
from conftest import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_schema import UUID_PATTERN, parse_ingested, parse_wire

import sentinel_durable as sentinel
from sentinel_durable.event import EventRules, validate_event

U32 = st.integers(min_value=0, max_value=2**32 - 1)
TEXT = st.text(max_size=200)
NAME = st.text(min_size=1, max_size=40)
AMOUNT = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
EMBEDDING = st.none() | st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8)


@st.composite
def any_valid_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "service_name": draw(NAME),
        "model": draw(NAME),
        "prompt": {"text": draw(TEXT), "tokens": draw(U32), "embedding": draw(EMBEDDING)},
        "response": {
            "text": draw(TEXT),
            "tokens": draw(U32),
            "finish_reason": draw(TEXT),
            "embedding": draw(EMBEDDING),
        },
        "latency_ms": draw(AMOUNT),
        "cost_usd": draw(AMOUNT),
        "metadata": draw(st.dictionaries(TEXT, TEXT, max_size=5)),
        "errors": draw(st.lists(TEXT, max_size=5)),
        "trace_id": draw(st.none() | NAME),
        "span_id": draw(st.none() | NAME),
    }
    timestamp = draw(st.none() | st.datetimes(timezones=st.none() | st.timezones()))
    if timestamp is not None:
        fields["timestamp"] = timestamp
    return fields


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(any_valid_fields(), st.integers(min_value=1, max_value=300))
def test_valid_event_serialises_to_the_wire_format_and_parses_back_equal(fields: dict[str, Any], limit: int) -> None:
    rules = EventRules(max_text_length=limit)
    try:
        event = validate_event(fields, rules)
    except sentinel.ValidationError as exc:
        # The only valid-looking input the strategy can produce that is refused:
        # an aware timestamp that falls outside datetime's range once moved to UTC.
        assert exc.field == "timestamp"
        return
    wire = parse_wire(event.to_json())
    assert len(wire["prompt"]["text"]) <= limit
    assert len(wire["response"]["text"]) <= limit
    for optional in ("trace_id", "span_id"):
        assert (optional in wire) == (fields[optional] is not None)
    assert ("embedding" in wire["prompt"]) == (fields["prompt"]["embedding"] is not None)
    assert sentinel.TelemetryEvent.from_json(event.to_json(), rules) == event
    assert sentinel.TelemetryEvent.from_json(event.to_json().decode(), rules).to_json() == event.to_json()
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset().total_seconds() == 0
    if "timestamp" in fields and fields["timestamp"].tzinfo is None:
        assert event.timestamp.replace(tzinfo=None) == fields["timestamp"]
    elif "timestamp" in fields:
        assert event.timestamp == fields["timestamp"].astimezone(UTC)


SURROGATE_TEXT = st.builds(lambda a, b: a + "\ud800" + b, TEXT, TEXT)
JUNK_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e-308])
    | st.text(max_size=30)
    | st.text(min_size=1000, max_size=3000)
    | SURROGATE_TEXT
    | st.binary(max_size=10)
    | st.datetimes()
    | st.uuids()
    | st.just(object())
)
JUNK = st.recursive(
    JUNK_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers() | SURROGATE_TEXT, inner, max_size=4)
    ),
    max_leaves=10,
)
GOOD_OR_JUNK: dict[str, st.SearchStrategy[Any]] = {
    "service": st.tuples(NAME | JUNK),
    "model": st.tuples(NAME | JUNK),
    "prompt": st.tuples(TEXT | JUNK, U32 | JUNK),
    "prompt_with_embedding": st.tuples(TEXT | JUNK, U32 | JUNK, EMBEDDING | JUNK),
    "response": st.tuples(TEXT | JUNK, U32 | JUNK, TEXT | JUNK),
    "response_with_embedding": st.tuples(TEXT | JUNK, U32 | JUNK, TEXT | JUNK, EMBEDDING | JUNK),
    "latency": st.tuples(AMOUNT | JUNK),
    "cost": st.tuples(AMOUNT | JUNK),
    "trace_id": st.tuples(NAME | JUNK),
    "span_id": st.tuples(NAME | JUNK),
    "metadata": st.tuples(st.dictionaries(TEXT, TEXT, max_size=3) | JUNK),
    "add_metadata": st.tuples(TEXT | JUNK, TEXT | JUNK),
    "errors": st.tuples(st.lists(TEXT, max_size=3) | JUNK),
    "add_error": st.tuples(TEXT | JUNK),
    "event_id": st.tuples(st.uuids().map(str) | JUNK),
    "timestamp": st.tuples(st.datetimes(timezones=st.none() | st.timezones()) | JUNK),
}
CALLS = st.lists(st.sampled_from(sorted(GOOD_OR_JUNK)).flatmap(lambda m: st.tuples(st.just(m), GOOD_OR_JUNK[m])))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(CALLS, st.booleans(), st.booleans())
def test_junk_builds_a_valid_event_or_raises_validation_error(
    calls: list[tuple[str, tuple[Any, ...]]], validation: bool, truncate: bool
) -> None:
    builder = sentinel.EventBuilder(
        EventRules(max_text_length=500, truncate_text=truncate, enable_validation=validation)
    )
    for method, args in calls:
        getattr(builder, method)(*args)
    try:
        event = builder.build()
    except sentinel.ValidationError as exc:
        assert exc.field, "the error must name a field"
        assert isinstance(exc, ValueError)
        return
    parse_ingested(event.to_json())  # LLM-Sentinel's ingestion takes it, whatever enable_validation says
    if validation:
        parse_wire(event.to_json())
    else:  # SDK rules off: still well-typed JSON that parses back to the same event
        lax = EventRules(max_text_length=500, truncate_text=False, enable_validation=False)
        assert sentinel.TelemetryEvent.from_json(event.to_json(), lax) == event


@pytest.mark.parametrize("bad", ["", "{", "[]", "null", '{"event_id": 5}', b"\xff\xfe"])
def test_from_json_refuses_bad_documents_with_validation_error(bad: str | bytes) -> None:
    with pytest.raises(sentinel.ValidationError):
        sentinel.TelemetryEvent.from_json(bad)


def test_from_json_refuses_unknown_fields() -> None:
    document = build().to_json().replace(b'"errors":[]', b'"errors":[],"extra":1')
    with pytest.raises(sentinel.ValidationError) as caught:
        sentinel.TelemetryEvent.from_json(document)
    assert caught.value.field == "extra"


def test_json_schema_is_generated_from_the_model() -> None:
    schema = sentinel.TelemetryEvent.model_json_schema(mode="serialization")
    assert set(schema["required"]) >= {"service_name", "model", "prompt", "response", "latency_ms", "cost_usd"}


def test_json_schema_states_the_ingestion_rules_and_no_limit_that_is_not_one() -> None:
    schema = sentinel.TelemetryEvent.model_json_schema(mode="serialization")
    properties = schema["properties"]
    assert (properties["service_name"]["minLength"], properties["service_name"]["maxLength"]) == (1, 255)
    assert properties["latency_ms"]["minimum"] == properties["cost_usd"]["minimum"] == 0
    assert properties["event_id"]["pattern"] == UUID_PATTERN
    # The UTF-8 rule is a length constraint of sys.maxsize inside the model: it is no limit to document.
    assert json.dumps(schema).count('"maxLength"') == 1


FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(any_valid_fields(), FINITE, FINITE, st.text(max_size=300), st.booleans())
def test_every_event_accepted_is_one_sentinels_ingestion_takes_whatever_enable_validation_says(
    fields: dict[str, Any], latency: float, cost: float, service: str, validation: bool
) -> None:
    fields.update(latency_ms=latency, cost_usd=cost, service_name=service)
    try:
        event = validate_event(fields, EventRules(truncate_text=False, enable_validation=validation))
    except sentinel.ValidationError:
        return
    parse_ingested(event.to_json())
