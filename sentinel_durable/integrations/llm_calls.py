"""What one OpenAI or Anthropic API call says, read from its request, its response, or its stream.

Each API (``Api``) reads the request's model and prompt (rendered as ``genai`` says), a response
(model, text, tokens, finish reason), and a stream chunk by chunk (``Api.observe``: a few
attribute reads per chunk, the text pieces kept in a list and joined at the end). Objects are
read by attribute or key: the client libraries are never imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .capture import Call
from .genai import message, render_messages, text_part
from .usage import _get, _text, _tokens, usage_from_anthropic, usage_from_openai

__all__ = ["ANTHROPIC_MESSAGES", "OPENAI_CHAT", "OPENAI_RESPONSES", "Api", "Observer"]


class Observer:
    """Reads a stream's chunks into a call; ``chunk`` returns False for a chunk to hide from the caller."""

    __slots__ = ("call", "hide_usage_chunk", "pieces")

    def __init__(self, call: Call, hide_usage_chunk: bool = False) -> None:
        self.call = call
        self.pieces: list[str] = []
        self.hide_usage_chunk = hide_usage_chunk

    def chunk(self, chunk: Any) -> bool:  # pragma: no cover - each API has its own
        raise NotImplementedError

    def end(self) -> Call:
        self.call.response = "".join(self.pieces)
        return self.call


@dataclass(frozen=True)
class Api:
    """One API of a client library: how its requests, responses and streams read."""

    name: str
    provider: str
    prompt: Callable[[Mapping[str, Any]], str]
    response: Callable[[Call, Any], None]
    observer: type[Observer]

    def start(self, kwargs: Mapping[str, Any]) -> Call:
        call = Call(
            model=_text(kwargs.get("model")),
            metadata={"provider": self.provider, "operation": self.name},
            timestamp=datetime.now(UTC),  # the event's time is the call's start, as a span's
        )
        call.prompt = self.prompt(kwargs)
        return call


# -- the prompt ---------------------------------------------------------------------------------------


def _openai_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, Sequence):
        return []
    parts = []
    for item in content:
        kind = _get(item, "type")
        text = _get(item, "text")
        if kind in ("text", "input_text", "output_text") and isinstance(text, str):
            parts.append(text_part(text))
        elif kind == "refusal":
            parts.append(text_part(str(_get(item, "refusal") or "")))
        else:
            parts.append({"type": str(kind or "part").removeprefix("input_").replace("image_url", "image")})
    return parts


def _chat_prompt(kwargs: Mapping[str, Any]) -> str:
    messages = []
    for item in kwargs.get("messages") or ():
        role = str(_get(item, "role") or "user")
        if role == "tool":
            parts: list[dict[str, Any]] = [
                {
                    "type": "tool_call_response",
                    "response": " ".join(p["content"] for p in _openai_parts(_get(item, "content")) if "content" in p),
                }
            ]
        else:
            parts = _openai_parts(_get(item, "content"))
        for tool_call in _get(item, "tool_calls") or ():
            parts.append({"type": "tool_call", "name": _get(_get(tool_call, "function"), "name")})
        messages.append(message("system" if role == "developer" else role, parts))
    return render_messages(messages)


def _responses_prompt(kwargs: Mapping[str, Any]) -> str:
    messages = []
    if isinstance(instructions := kwargs.get("instructions"), str) and instructions:
        messages.append(message("system", [text_part(instructions)]))
    given = kwargs.get("input")
    if isinstance(given, str):
        messages.append(message("user", [text_part(given)]))
    for item in given if isinstance(given, Sequence) and not isinstance(given, str) else ():
        kind = _get(item, "type")
        if kind == "function_call":
            messages.append(message("assistant", [{"type": "tool_call", "name": _get(item, "name")}]))
        elif kind == "function_call_output":
            output = _get(item, "output")
            messages.append(
                message("tool", [{"type": "tool_call_response", "response": output if isinstance(output, str) else ""}])
            )
        else:
            role = str(_get(item, "role") or "user")
            messages.append(message("system" if role == "developer" else role, _openai_parts(_get(item, "content"))))
    return render_messages(messages)


def _anthropic_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, Sequence) else ():
        kind = _get(block, "type")
        if kind == "text":
            parts.append(text_part(str(_get(block, "text") or "")))
        elif kind == "tool_use":
            parts.append({"type": "tool_call", "name": _get(block, "name")})
        elif kind == "tool_result":
            inner = _anthropic_parts(_get(block, "content"))
            parts.append(
                {"type": "tool_call_response", "response": "\n".join(p["content"] for p in inner if "content" in p)}
            )
        else:
            parts.append({"type": str(kind or "part")})
    return parts


def _messages_prompt(kwargs: Mapping[str, Any]) -> str:
    messages = []
    system = kwargs.get("system")
    if system:
        messages.append(message("system", _anthropic_parts(system)))
    for item in kwargs.get("messages") or ():
        messages.append(message(str(_get(item, "role") or "user"), _anthropic_parts(_get(item, "content"))))
    return render_messages(messages)


# -- responses ------------------------------------------------------------------------------------


def _read_usage(call: Call, response: Any, usage: Any) -> None:
    call.model = _text(_get(response, "model")) or call.model
    call.prompt_tokens = usage.prompt_tokens
    call.completion_tokens = usage.completion_tokens
    call.finish_reason = usage.finish_reason
    call.response = usage.response_text or ""


def _chat_response(call: Call, response: Any) -> None:
    _read_usage(call, response, usage_from_openai(response))


def _messages_response(call: Call, response: Any) -> None:
    _read_usage(call, response, usage_from_anthropic(response))


def _responses_response(call: Call, response: Any) -> None:
    call.model = _text(_get(response, "model")) or call.model
    usage = _get(response, "usage")
    call.prompt_tokens = _tokens(_get(usage, "input_tokens"))
    call.completion_tokens = _tokens(_get(usage, "output_tokens"))
    status = _get(response, "status")
    if status == "completed":
        call.finish_reason = "stop"
    elif status == "incomplete":
        call.finish_reason = _text(_get(_get(response, "incomplete_details"), "reason")) or "incomplete"
    else:
        call.finish_reason = _text(status)
    text = _responses_text(response)
    if text is not None:
        call.response = text


def _responses_text(response: Any) -> str | None:
    texts = []
    for item in _get(response, "output") or ():
        if _get(item, "type") != "message":
            continue
        for part in _get(item, "content") or ():
            if _get(part, "type") == "output_text" and isinstance(text := _get(part, "text"), str):
                texts.append(text)
    return "".join(texts) if texts or _get(response, "output") is not None else None


# -- streams --------------------------------------------------------------------------------------


class _ChatObserver(Observer):
    __slots__ = ()

    def chunk(self, chunk: Any) -> bool:
        choices = chunk.choices
        if choices:
            choice = choices[0]
            delta = choice.delta
            if delta is not None and delta.content:
                self.pieces.append(delta.content)
            if choice.finish_reason:
                self.call.finish_reason = choice.finish_reason
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.call.prompt_tokens = _tokens(usage.prompt_tokens)
            self.call.completion_tokens = _tokens(usage.completion_tokens)
            if not choices and self.hide_usage_chunk:
                self.call.model = chunk.model or self.call.model
                return False  # the usage chunk only we asked for
        if chunk.model:
            self.call.model = chunk.model
        return True


class _ResponsesObserver(Observer):
    __slots__ = ()

    def chunk(self, chunk: Any) -> bool:
        kind = chunk.type
        if kind == "response.output_text.delta":
            self.pieces.append(chunk.delta)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            _responses_response(self.call, chunk.response)
            if self.call.response:
                self.pieces = [self.call.response]
        return True


class _MessagesObserver(Observer):
    __slots__ = ()

    def chunk(self, chunk: Any) -> bool:
        kind = chunk.type
        if kind == "content_block_delta":
            text = getattr(chunk.delta, "text", None)
            if text:
                self.pieces.append(text)
        elif kind == "message_start":
            started = chunk.message
            self.call.model = started.model or self.call.model
            self.call.prompt_tokens = _tokens(started.usage.input_tokens)
            self.call.completion_tokens = _tokens(started.usage.output_tokens)
        elif kind == "message_delta":
            self.call.finish_reason = chunk.delta.stop_reason or self.call.finish_reason
            if chunk.usage is not None:
                self.call.completion_tokens = _tokens(chunk.usage.output_tokens)
        return True


def read_message_snapshot(call: Call, snapshot: Any) -> None:
    """An Anthropic ``MessageStream``'s message so far (what ``messages.stream`` accumulates itself)."""
    if snapshot is not None:
        _messages_response(call, snapshot)


OPENAI_CHAT = Api("chat", "openai", _chat_prompt, _chat_response, _ChatObserver)
OPENAI_RESPONSES = Api("responses", "openai", _responses_prompt, _responses_response, _ResponsesObserver)
ANTHROPIC_MESSAGES = Api("chat", "anthropic", _messages_prompt, _messages_response, _MessagesObserver)
