"""The telemetry event: pydantic models that are at once the schema, the validator and the wire format.

``TelemetryEvent.model_dump_json()`` *is* the Kafka record value that LLM-Sentinel's
ingestion accepts (docs/wire-format.md), and ``TelemetryEvent.model_json_schema()`` documents it.
There is no second validator: the builder, ``Client.track`` and the send-time re-check
all go through :func:`validate_event`.

Two kinds of rule apply:

* **ingestion rules**, always on, because LLM-Sentinel's ingestion (``serde_json`` into its
  ``TelemetryEvent``, then that type's ``validate()``) drops a record that breaks them: every
  required field present with its JSON type, strings that encode as UTF-8 (no lone
  surrogates), finite numbers, tokens in ``0..2**32-1`` (booleans are not integers),
  ``event_id`` a hyphenated UUID, metadata a string-to-string map and errors a list of
  strings; ``service_name`` of 1 to 255 characters, ``latency_ms`` and ``cost_usd`` >= 0,
  and prompt and response text of at most 100,000 characters (the limit Sentinel's type
  declares);
* **SDK rules**, stricter than the ingestion and skipped when ``enable_validation`` is off:
  a non-empty model name and trace/span ids, and text no longer than ``max_text_length``
  when ``truncate_text`` is off.

Text longer than ``max_text_length`` is cut when ``truncate_text`` is on (whatever
``enable_validation`` says) so that the result, marker included, fits the limit.

Reprs of the models name the size of prompt, response, metadata and error text, never the
text itself; so do the errors (see ``errors.ValidationError``).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from .errors import ValidationError, describe_type

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_TEXT_LENGTH",
    "SENTINEL_MAX_SERVICE_NAME",
    "SENTINEL_MAX_TEXT_LENGTH",
    "TRUNCATION_MARKER",
    "EventRules",
    "PromptInfo",
    "ResponseInfo",
    "TelemetryEvent",
    "validate_event",
]

U32_MAX = 2**32 - 1
#: The text limit LLM-Sentinel's ``TelemetryEvent`` declares (``#[validate(length(max = 100000))]``
#: on prompt and response text): ``max_text_length`` may not exceed it.
SENTINEL_MAX_TEXT_LENGTH = 100_000
#: ``service_name`` length that Sentinel's ``validate()`` accepts (``length(min = 1, max = 255)``).
SENTINEL_MAX_SERVICE_NAME = 255
DEFAULT_MAX_TEXT_LENGTH = SENTINEL_MAX_TEXT_LENGTH
#: Kafka's default ``max.message.bytes`` of a topic (1 MiB + 12 bytes of log overhead).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: Appended to text cut by truncation; counted inside ``max_text_length``.
TRUNCATION_MARKER = "...[truncated]"


@dataclass(frozen=True, slots=True)
class EventRules:
    """The configurable part of validation, taken from ``Config`` by the client."""

    max_text_length: int = DEFAULT_MAX_TEXT_LENGTH
    truncate_text: bool = True
    enable_validation: bool = True
    otel_trace_ids: bool = True
    #: Largest record (see :func:`record_size`) that may be spooled.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if not 0 < self.max_text_length <= SENTINEL_MAX_TEXT_LENGTH:
            raise ValueError(
                f"max_text_length={self.max_text_length} is outside 1..{SENTINEL_MAX_TEXT_LENGTH}"
                " (LLM-Sentinel's limit on prompt and response text)"
            )
        if self.max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes={self.max_message_bytes} must be > 0")


_DEFAULT_RULES = EventRules()


def _rules(info: ValidationInfo) -> EventRules:
    context = info.context
    return context if isinstance(context, EventRules) else _DEFAULT_RULES


# --- type rules (always on) -------------------------------------------------


# The rules pydantic-core can check in Rust are constraints, not Python validators: a Python call
# from the validator costs more than the check (an event has eleven strings). Their errors get our
# wording in _message() below.

#: Any length constraint makes pydantic-core read a string as UTF-8, which refuses a lone surrogate
#: (error ``string_unicode``): this limit is no limit of its own.
_UTF8 = Field(max_length=sys.maxsize)
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _uuid_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def new_event_id() -> str:
    """A random (version 4) UUID, hyphenated: ``str(uuid.uuid4())`` at a quarter of the cost."""
    hex_ = os.urandom(16).hex()
    variant = "89ab"[int(hex_[16], 16) & 3]
    return f"{hex_[:8]}-{hex_[8:12]}-4{hex_[13:16]}-{variant}{hex_[17:20]}-{hex_[20:]}"


def _to_utc(value: datetime) -> datetime:
    # A naive datetime is taken as UTC; an aware one is converted.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise PydanticCustomError("timestamp_range", "is out of range once converted to UTC") from None


def _embedding_to_list(value: Any) -> Any:
    # Embeddings often arrive as tuples or numpy arrays; the wire wants a JSON array.
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, list | str | bytes | Mapping) and callable(getattr(value, "tolist", None)):
        try:
            return value.tolist()
        except Exception as exc:
            raise PydanticCustomError(
                "embedding", "could not be read as a list of numbers: {error}", {"error": str(exc)}
            ) from None
    return value


WireStr = Annotated[str, _UTF8, WithJsonSchema({"type": "string"})]  # the schema without that non-limit
Tokens = Annotated[int, Field(ge=0, le=U32_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Embedding = Annotated[list[FiniteFloat], BeforeValidator(_embedding_to_list)]
EventId = Annotated[str, BeforeValidator(_uuid_to_str), Field(pattern=_UUID_PATTERN)]
# pydantic-core writes a UTC datetime as RFC 3339 ending in "Z" ("2026-11-27T03:21:29.541265Z"; the
# fraction is left out when it is zero), with a four-digit year.
Timestamp = Annotated[datetime, AfterValidator(_to_utc)]


# --- ingestion rules beyond the types (always on) ----------------------------------


# --- SDK rules (skipped when enable_validation is off) -----------------------------


def _non_empty(value: str, info: ValidationInfo) -> str:
    if not value and _rules(info).enable_validation:
        raise PydanticCustomError("non_empty", "must not be empty")
    return value


def _within_text_limit(value: str, info: ValidationInfo) -> str:
    rules = _rules(info)
    limit = rules.max_text_length
    if len(value) <= limit:
        return value
    if rules.truncate_text:
        if limit <= len(TRUNCATION_MARKER):
            return value[:limit]
        return value[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    if rules.enable_validation:
        raise PydanticCustomError(
            "text_too_long",
            "is {length} characters, over max_text_length={limit} (truncate_text is off)",
            {"length": len(value), "limit": limit},
        )
    if len(value) > SENTINEL_MAX_TEXT_LENGTH:  # an ingestion rule: always on
        raise PydanticCustomError(
            "text_too_long",
            "is {length} characters, over the {limit} LLM-Sentinel accepts (truncate_text is off)",
            {"length": len(value), "limit": SENTINEL_MAX_TEXT_LENGTH},
        )
    return value


NonEmptyStr = Annotated[WireStr, AfterValidator(_non_empty)]
ServiceName = Annotated[str, Field(min_length=1, max_length=SENTINEL_MAX_SERVICE_NAME)]
NonNegativeFloat = Annotated[FiniteFloat, Field(ge=0)]
Text = Annotated[WireStr, AfterValidator(_within_text_limit)]


def _is_none(value: Any) -> bool:
    return value is None


# --- the models ----------------------------------------------------------------

_MODEL_CONFIG = ConfigDict(
    strict=True,  # no coercion: "5" is not a token count, True is not an integer
    extra="forbid",  # a misspelt field is an error, and unknown fields are never emitted
    revalidate_instances="always",  # send() re-checks an event changed after build()
    hide_input_in_errors=True,  # prompt text must not leak into tracebacks
)


class _Described:
    """Stands in for a value in a repr: its type and size, never its content."""

    __slots__ = ("_text",)

    def __init__(self, value: Any) -> None:
        self._text = f"<{describe_type(value)}>"

    def __repr__(self) -> str:
        return self._text


class _PrivateRepr(BaseModel):
    """``repr()``/``str()`` name the size of user content (``_PRIVATE`` fields), never the content."""

    _PRIVATE: ClassVar[frozenset[str]] = frozenset()

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_Described(value) if name in self._PRIVATE and value is not None else value)


class PromptInfo(_PrivateRepr):
    """The prompt sent to the model: ``{text, tokens, embedding?}`` on the wire."""

    model_config = _MODEL_CONFIG
    _PRIVATE = frozenset({"text", "embedding"})

    text: Text
    tokens: Tokens
    embedding: Embedding | None = Field(default=None, exclude_if=_is_none)


class ResponseInfo(_PrivateRepr):
    """The model's response: ``{text, tokens, finish_reason, embedding?}`` on the wire."""

    model_config = _MODEL_CONFIG
    _PRIVATE = frozenset({"text", "embedding"})

    text: Text
    tokens: Tokens
    finish_reason: WireStr
    embedding: Embedding | None = Field(default=None, exclude_if=_is_none)


class TelemetryEvent(_PrivateRepr):
    """One LLM call, as LLM-Sentinel ingests it (docs/wire-format.md).

    ``model_dump_json()`` gives the exact Kafka record value; ``from_json`` parses it back.
    Build one with :class:`~sentinel_durable.EventBuilder` or ``Client.track``; constructing
    it directly applies the default rules.
    """

    model_config = _MODEL_CONFIG
    _PRIVATE = frozenset({"metadata", "errors"})

    event_id: EventId = Field(default_factory=new_event_id)
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    service_name: ServiceName
    model: NonEmptyStr
    prompt: PromptInfo
    response: ResponseInfo
    latency_ms: NonNegativeFloat
    cost_usd: NonNegativeFloat
    metadata: dict[WireStr, WireStr] = Field(default_factory=dict)
    errors: list[WireStr] = Field(default_factory=list)
    trace_id: NonEmptyStr | None = Field(default=None, exclude_if=_is_none)
    span_id: NonEmptyStr | None = Field(default=None, exclude_if=_is_none)

    def to_json(self) -> bytes:
        """The UTF-8 JSON record value, exactly as it goes to Kafka."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_json(cls, data: str | bytes, rules: EventRules = _DEFAULT_RULES) -> TelemetryEvent:
        """Parse a record value (or an exported line) back into an event, checking every rule."""
        try:
            return cls.model_validate_json(data, context=rules)
        except PydanticValidationError as exc:
            _raise_ours(exc)


def validate_event(data: TelemetryEvent | Mapping[str, Any], rules: EventRules = _DEFAULT_RULES) -> TelemetryEvent:
    """Check an event (or its fields) against every rule and return a fresh, valid event.

    Raises :class:`~sentinel_durable.ValidationError` naming the first bad field.
    """
    try:
        return TelemetryEvent.model_validate(data, context=rules)
    except PydanticValidationError as exc:
        _raise_ours(exc)


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of the event",
}


#: Our wording of the errors of the rules checked as constraints: (error type, field) -> message.
_CONSTRAINTS = {
    ("string_too_short", "service_name"): "must not be empty (LLM-Sentinel drops such events)",
    ("string_too_long", "service_name"): "is {length} characters, over the {limit} LLM-Sentinel accepts",
    ("greater_than_equal", "latency_ms"): "must be >= 0 (LLM-Sentinel drops negative values)",
    ("greater_than_equal", "cost_usd"): "must be >= 0 (LLM-Sentinel drops negative values)",
    ("string_pattern_mismatch", "event_id"): "must be a hyphenated UUID like 123e4567-e89b-12d3-a456-426614174000",
}


def _message(error: ErrorDetails, location: list[str]) -> str:
    value, kind = error.get("input"), error["type"]
    field = location[-1] if location else ""
    if kind == "string_unicode" and field == "event_id":
        kind = "string_pattern_mismatch"  # as before: not a hyphenated UUID
    elif kind == "string_unicode":
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"is not valid Unicode: lone surrogate at position {exc.start}"
        except AttributeError:
            pass
        return "is not valid Unicode"
    ours = _CONSTRAINTS.get((kind, field))
    if ours is not None:
        length = len(value) if isinstance(value, str) else 0
        return ours.format(length=length, limit=SENTINEL_MAX_SERVICE_NAME)
    return _MESSAGES.get(kind, error["msg"])


def _raise_ours(exc: PydanticValidationError) -> NoReturn:
    error = exc.errors(include_url=False)[0]
    location = [str(part) for part in error["loc"]]
    message = _message(error, location)
    if location and location[-1] == "[key]":  # a bad key inside metadata
        location.pop()
        message = f"has an invalid key: {message}"
        if len(location) > 1:
            location.pop()
    if error["type"] == "missing":  # pydantic's input is then the enclosing object: not the field's value
        raise ValidationError(".".join(location), message, show_value=False) from exc
    raise ValidationError(".".join(location) or "event", message, error.get("input")) from exc
