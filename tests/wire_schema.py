"""DESIGN §2 written out as a JSON Schema, by hand, as the test oracle for the wire format.

Deliberately independent of the pydantic models: if the models drift from the design,
the tests that check their JSON against this schema fail.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
RFC3339_UTC_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"
U32_MAX = 2**32 - 1

_EMBEDDING = {"type": "array", "items": {"type": "number"}}

WIRE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "event_id",
        "timestamp",
        "service_name",
        "model",
        "prompt",
        "response",
        "latency_ms",
        "cost_usd",
        "metadata",
        "errors",
    ],
    "properties": {
        "event_id": {"type": "string", "pattern": UUID_PATTERN},
        "timestamp": {"type": "string", "pattern": RFC3339_UTC_PATTERN},
        "service_name": {"type": "string", "minLength": 1},
        "model": {"type": "string", "minLength": 1},
        "prompt": {
            "type": "object",
            "additionalProperties": False,
            "required": ["text", "tokens"],
            "properties": {
                "text": {"type": "string"},
                "tokens": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
                "embedding": _EMBEDDING,
            },
        },
        "response": {
            "type": "object",
            "additionalProperties": False,
            "required": ["text", "tokens", "finish_reason"],
            "properties": {
                "text": {"type": "string"},
                "tokens": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
                "finish_reason": {"type": "string"},
                "embedding": _EMBEDDING,
            },
        },
        "latency_ms": {"type": "number", "minimum": 0},
        "cost_usd": {"type": "number", "minimum": 0},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "errors": {"type": "array", "items": {"type": "string"}},
        "trace_id": {"type": "string", "minLength": 1},
        "span_id": {"type": "string", "minLength": 1},
    },
}


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_wire(data: bytes) -> dict[str, Any]:
    """Parse a record value the way a strict JSON reader (serde_json) would, then check it."""
    document = json.loads(data.decode("utf-8", errors="strict"), parse_constant=_refuse_constant)
    _check(document, _WIRE_VALIDATOR)
    return document  # type: ignore[no-any-return]


# What LLM-Sentinel's Kafka ingestion accepts: serde_json into its TelemetryEvent, then that type's
# validator derive (llm-sentinel crates/sentinel-core/src/events.rs, sentinel-ingestion/src/kafka.rs):
# service_name `length(min = 1, max = 255)`, latency_ms and cost_usd `range(min = 0.0)`, prompt and
# response text declared `length(max = 100000)`. model, finish_reason, trace_id and span_id carry no
# rule there (empty strings pass). Every event the SDK spools, whatever enable_validation says, must
# pass this.
_SENTINEL_TEXT = {"type": "string", "maxLength": 100_000}
INGESTION_SCHEMA: dict[str, Any] = {
    **WIRE_SCHEMA,
    "properties": {
        **WIRE_SCHEMA["properties"],
        "service_name": {"type": "string", "minLength": 1, "maxLength": 255},
        "model": {"type": "string"},
        "prompt": {
            **WIRE_SCHEMA["properties"]["prompt"],
            "properties": {**WIRE_SCHEMA["properties"]["prompt"]["properties"], "text": _SENTINEL_TEXT},
        },
        "response": {
            **WIRE_SCHEMA["properties"]["response"],
            "properties": {**WIRE_SCHEMA["properties"]["response"]["properties"], "text": _SENTINEL_TEXT},
        },
        "trace_id": {"type": "string"},
        "span_id": {"type": "string"},
    },
}


def parse_ingested(data: bytes) -> dict[str, Any]:
    """Parse a record value the way LLM-Sentinel's ingestion would, refusing what it drops."""
    document = json.loads(data.decode("utf-8", errors="strict"), parse_constant=_refuse_constant)
    _check(document, _INGESTION_VALIDATOR)
    return document  # type: ignore[no-any-return]


def _validator(schema: dict[str, Any]) -> Any:
    """A validator of ``schema``, checked once (``jsonschema.validate`` checks the schema on every call)."""
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _check(document: Any, validator: Any) -> None:
    """Raise what ``jsonschema.validate`` raises: the best-matching error, if any."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise error


_WIRE_VALIDATOR = _validator(WIRE_SCHEMA)
_INGESTION_VALIDATOR = _validator(INGESTION_SCHEMA)
