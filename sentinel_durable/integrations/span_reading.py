"""Reading an OpenTelemetry span that follows the GenAI semantic conventions as one LLM call.

The attributes read, newest conventions first: ``gen_ai.response.model`` / ``gen_ai.request.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens`` (``prompt_tokens`` / ``completion_tokens``
before), ``gen_ai.response.finish_reasons``, ``gen_ai.provider.name`` (``gen_ai.system``
before), ``gen_ai.operation.name`` (``llm.request.type``); the text from
``gen_ai.system_instructions``, ``gen_ai.input.messages`` and ``gen_ai.output.messages`` (JSON
messages with ``parts``), else the indexed ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``
attributes, else the message events (``gen_ai.user.message``... ``gen_ai.choice``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .capture import Call
from .genai import message, render_messages, text_part

__all__ = ["LLM_OPERATIONS", "call_of_span", "is_genai", "llm_operation"]

#: The GenAI operations that are one call of a model; the others (``execute_tool``,
#: ``invoke_agent``, ``create_agent``...) are not events.
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "completion", "responses"})
_GENAI_KEYS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model")
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def is_genai(attributes: Mapping[str, Any]) -> bool:
    return any(key in attributes for key in _GENAI_KEYS)


def llm_operation(attributes: Mapping[str, Any]) -> str | None:
    """The operation of a GenAI span that is a model call, else None."""
    operation = attributes.get("gen_ai.operation.name", attributes.get("llm.request.type"))
    if operation is None:
        return "chat" if "gen_ai.request.model" in attributes else None
    return str(operation) if str(operation) in LLM_OPERATIONS else None


def call_of_span(span: Any, operation: str, attributes: Mapping[str, Any] | None = None) -> Call:
    """The call a GenAI span describes (``span`` a ``ReadableSpan``; ``attributes`` its attributes, if
    copied already)."""
    if attributes is None:
        attributes = span.attributes or {}
    context = span.get_span_context()
    call = Call(
        model=_text(attributes.get("gen_ai.response.model")) or _text(attributes.get("gen_ai.request.model")),
        prompt_tokens=_int(attributes.get("gen_ai.usage.input_tokens", attributes.get("gen_ai.usage.prompt_tokens"))),
        completion_tokens=_int(
            attributes.get("gen_ai.usage.output_tokens", attributes.get("gen_ai.usage.completion_tokens"))
        ),
        finish_reason=_first(attributes.get("gen_ai.response.finish_reasons")),
        latency_ms=max(0, (span.end_time or 0) - (span.start_time or 0)) / 1e6,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        timestamp=datetime.fromtimestamp(span.start_time / 1e9, UTC) if span.start_time else None,
        service=_text((span.resource.attributes if span.resource is not None else {}).get("service.name")),
    )
    provider = _text(attributes.get("gen_ai.provider.name")) or _text(attributes.get("gen_ai.system"))
    call.metadata = {"operation": operation}
    if provider:
        call.metadata["provider"] = provider
    if response_id := _text(attributes.get("gen_ai.response.id")):
        call.metadata["response_id"] = response_id
    call.errors = _errors(span, attributes)
    call.prompt, call.response = _texts(span, attributes)
    return call


def _errors(span: Any, attributes: Mapping[str, Any]) -> list[str]:
    errors = []
    for event in span.events or ():
        if event.name == "exception":
            kind = _text(event.attributes.get("exception.type")) or "exception"
            text = _text(event.attributes.get("exception.message"))
            errors.append(f"{kind}: {text}" if text else kind)
    status = span.status
    if not errors and status is not None and status.status_code.name == "ERROR":
        kind = _text(attributes.get("error.type")) or "error"
        errors.append(f"{kind}: {status.description}" if status.description else kind)
    return errors


# -- text -----------------------------------------------------------------------------------------


def _texts(span: Any, attributes: Mapping[str, Any]) -> tuple[str, str]:
    inputs = _messages(attributes.get("gen_ai.input.messages"))
    outputs = _messages(attributes.get("gen_ai.output.messages"))
    if inputs is None:
        inputs = _indexed(attributes, "gen_ai.prompt")
    if outputs is None:
        outputs = _indexed(attributes, "gen_ai.completion")
    if inputs is None or outputs is None:
        from_events = _from_events(span.events or ())
        inputs = inputs if inputs is not None else from_events[0]
        outputs = outputs if outputs is not None else from_events[1]
    instructions = _parts(attributes.get("gen_ai.system_instructions"))
    if instructions:
        inputs = [message("system", instructions), *(inputs or [])]
    return render_messages(inputs or []), render_messages(outputs or [])


def _messages(value: Any) -> list[Mapping[str, Any]] | None:
    if value is None:
        return None
    parsed = _parsed(value)
    if not isinstance(parsed, list):
        return None
    return [item for item in parsed if isinstance(item, Mapping)]


def _parts(value: Any) -> list[Any]:
    parsed = _parsed(value) if value is not None else None
    if isinstance(parsed, str):
        return [text_part(parsed)]
    return list(parsed) if isinstance(parsed, list) else []


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, Sequence):
        return [_parsed(item) for item in value]
    return value


def _indexed(attributes: Mapping[str, Any], prefix: str) -> list[Mapping[str, Any]] | None:
    """``prefix.0.role`` / ``prefix.0.content``, ``prefix.1.*``...: the older attributes."""
    found: list[Mapping[str, Any]] = []
    index = 0
    while True:
        content = attributes.get(f"{prefix}.{index}.content")
        role = attributes.get(f"{prefix}.{index}.role")
        if content is None and role is None:
            break
        found.append(message(str(role or "user"), [text_part(_content_text(content))]))
        index += 1
    return found or None


def _from_events(events: Sequence[Any]) -> tuple[list[Mapping[str, Any]] | None, list[Mapping[str, Any]] | None]:
    inputs: list[Mapping[str, Any]] = []
    outputs: list[Mapping[str, Any]] = []
    for event in events:
        attributes = event.attributes or {}
        if event.name in _MESSAGE_EVENTS:
            role = _MESSAGE_EVENTS[event.name]
            inputs.append(message(role, [text_part(_content_text(attributes.get("content")))]))
        elif event.name == "gen_ai.choice":
            body = _parsed(attributes.get("message", attributes.get("content")))
            content = body.get("content") if isinstance(body, Mapping) else body
            outputs.append(message("assistant", [text_part(_content_text(content))]))
        elif "gen_ai.input.messages" in attributes or "gen_ai.output.messages" in attributes:
            inputs.extend(_messages(attributes.get("gen_ai.input.messages")) or [])
            outputs.extend(_messages(attributes.get("gen_ai.output.messages")) or [])
    return inputs or None, outputs or None


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        parsed = _parsed(content)
        if isinstance(parsed, list):  # content given as a JSON list of blocks
            return "\n".join(_block_text(block) for block in parsed if _block_text(block))
        return content
    return str(content)


def _block_text(block: Any) -> str:
    if isinstance(block, Mapping):
        value = block.get("text", block.get("content"))
        return value if isinstance(value, str) else ""
    return block if isinstance(block, str) else ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _first(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, Sequence) and value and isinstance(value[0], str):
        return value[0] or None
    return None
