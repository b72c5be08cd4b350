"""The fluent event builder, the Python form of the Go SDK's ``NewEventBuilder()``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .config import Config
from .errors import ValidationError, describe_value
from .event import EventRules, TelemetryEvent, validate_event
from .integrations.otel import resolve_span_ids
from .records import check_record_size

__all__ = ["EventBuilder"]


class EventBuilder:
    """Collects an event's fields; :meth:`build` checks them all at once.

    Setters accept anything and never raise: every rule is checked by ``build()``,
    which raises :class:`~sentinel_durable.ValidationError` naming the first missing or
    bad field, or an event whose Kafka record would exceed ``max_message_bytes``. The cost
    defaults to 0.0, as in ``Client.track``. A builder can be reused; each ``build()``
    without an explicit :meth:`event_id` gets a new id.

    >>> event = (EventBuilder().service("svc").model("gpt-4")
    ...          .prompt("What is the capital of France?", 8)
    ...          .response("Paris.", 7, "stop").latency(150.5).cost(0.001).build())
    """

    def __init__(self, rules: Config | EventRules | None = None) -> None:
        """``rules``: the text limit and validation settings to build with, taken from a
        client's ``Config`` (``EventBuilder(client.config)``); the defaults otherwise."""
        self._rules = rules.event_rules if isinstance(rules, Config) else (rules or EventRules())
        self._fields: dict[str, Any] = {}
        self._metadata: Any = {}
        self._extra_metadata: list[tuple[Any, Any]] = []
        self._errors: list[Any] = []

    def service(self, name: str) -> EventBuilder:
        self._fields["service_name"] = name
        return self

    def model(self, name: str) -> EventBuilder:
        self._fields["model"] = name
        return self

    def prompt(self, text: str, tokens: int) -> EventBuilder:
        self._fields["prompt"] = {"text": text, "tokens": tokens}
        return self

    def prompt_with_embedding(self, text: str, tokens: int, embedding: Any) -> EventBuilder:
        self._fields["prompt"] = {"text": text, "tokens": tokens, "embedding": embedding}
        return self

    def response(self, text: str, tokens: int, finish_reason: str) -> EventBuilder:
        self._fields["response"] = {"text": text, "tokens": tokens, "finish_reason": finish_reason}
        return self

    def response_with_embedding(self, text: str, tokens: int, finish_reason: str, embedding: Any) -> EventBuilder:
        self._fields["response"] = {
            "text": text,
            "tokens": tokens,
            "finish_reason": finish_reason,
            "embedding": embedding,
        }
        return self

    def latency(self, ms: float) -> EventBuilder:
        self._fields["latency_ms"] = ms
        return self

    def cost(self, usd: float) -> EventBuilder:
        self._fields["cost_usd"] = usd
        return self

    def trace_id(self, trace_id: str) -> EventBuilder:
        self._fields["trace_id"] = trace_id
        return self

    def span_id(self, span_id: str) -> EventBuilder:
        self._fields["span_id"] = span_id
        return self

    def metadata(self, metadata: Mapping[str, str]) -> EventBuilder:
        """Replace all metadata (including pairs added before with :meth:`add_metadata`)."""
        self._metadata = metadata
        self._extra_metadata = []
        return self

    def add_metadata(self, key: str, value: str) -> EventBuilder:
        self._extra_metadata.append((key, value))
        return self

    def errors(self, errors: list[str]) -> EventBuilder:
        """Replace the error list (including errors added before with :meth:`add_error`)."""
        self._errors = list(errors) if isinstance(errors, tuple) else errors
        return self

    def add_error(self, error: str) -> EventBuilder:
        if not isinstance(self._errors, list):
            self._errors = [self._errors]  # build() reports the bad value set by errors()
        self._errors.append(error)
        return self

    def event_id(self, event_id: str) -> EventBuilder:
        """Override the generated id, e.g. to re-send an event with its original id."""
        self._fields["event_id"] = event_id
        return self

    def timestamp(self, timestamp: datetime) -> EventBuilder:
        """Override the build time; a naive datetime is taken as UTC."""
        self._fields["timestamp"] = timestamp
        return self

    def build(self) -> TelemetryEvent:
        """Check every field and return the event, or raise ``ValidationError``."""
        fields = {"cost_usd": 0.0, **self._fields}
        fields["metadata"] = self._merged_metadata()
        fields["errors"] = self._errors if not isinstance(self._errors, list) else list(self._errors)
        if self._rules.otel_trace_ids:
            fields["trace_id"], fields["span_id"] = resolve_span_ids(fields.get("trace_id"), fields.get("span_id"))
        event = validate_event(fields, self._rules)
        check_record_size(event.to_json(), event, self._rules.max_message_bytes)
        return event

    def __repr__(self) -> str:
        # Which fields are set, and the values of those that never carry user content.
        shown = [f"{name}={describe_value(name, value)}" for name, value in self._fields.items()
                 if name not in ("prompt", "response")]  # fmt: skip
        for part in ("prompt", "response"):
            info = self._fields.get(part)
            if isinstance(info, dict):
                text = describe_value(f"{part}.text", info.get("text"))
                embedding = ", embedding" if info.get("embedding") is not None else ""
                shown.append(f"{part}=<text {text}, tokens={describe_value(f'{part}.tokens', info.get('tokens'))}"
                             f"{embedding}>")  # fmt: skip
        metadata = len(self._metadata) if isinstance(self._metadata, Mapping) else 0
        metadata += len(self._extra_metadata)
        errors = len(self._errors) if isinstance(self._errors, list) else 1
        for name, count in (("metadata", metadata), ("errors", errors)):
            if count:
                shown.append(f"{name}=<{count} {'entry' if count == 1 else 'entries'}>")
        return f"<EventBuilder {' '.join(shown) or '(empty)'}>"

    def _merged_metadata(self) -> Any:
        if not isinstance(self._metadata, Mapping):
            if not self._extra_metadata:
                return self._metadata  # the model reports the bad value
            raise ValidationError("metadata", "must be a mapping of strings to strings", self._metadata)
        merged = dict(self._metadata)
        for key, value in self._extra_metadata:
            try:
                merged[key] = value
            except TypeError:  # an unhashable key
                raise ValidationError("metadata", "has an invalid key: keys must be strings", key) from None
        return merged
