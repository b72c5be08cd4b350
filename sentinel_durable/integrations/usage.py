"""Reading what an LLM response says about its call: tokens, finish reason, text.

The adapters read OpenAI chat completions and Anthropic messages by duck typing (attribute
or key access): neither package is imported or needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Usage", "usage_from_anthropic", "usage_from_openai", "usage_from_result"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What an LLM response says about its call; ``None`` where it says nothing."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    response_text: str | None = None


def usage_from_openai(response: Any) -> Usage:
    """Read an OpenAI chat completion (``client.chat.completions.create(...)``, or its dict).

    ``usage.prompt_tokens`` / ``usage.completion_tokens``, and from ``choices[0]`` the
    ``finish_reason`` and ``message.content`` (``text`` for legacy completions). The
    content is ``None`` when the model only called tools: the text is then ``None``.
    """
    usage = _get(response, "usage")
    choices = _get(response, "choices")
    first = choices[0] if isinstance(choices, list | tuple) and choices else None
    message = _get(first, "message")
    text = _get(message, "content") if message is not None else _get(first, "text")
    return Usage(
        prompt_tokens=_tokens(_get(usage, "prompt_tokens")),
        completion_tokens=_tokens(_get(usage, "completion_tokens")),
        finish_reason=_text(_get(first, "finish_reason")),
        response_text=_text(text),
    )


def usage_from_anthropic(response: Any) -> Usage:
    """Read an Anthropic message (``client.messages.create(...)``, or its dict).

    ``usage.input_tokens`` (input not read from the prompt cache, as Anthropic counts it) /
    ``usage.output_tokens``, ``stop_reason``, and the text of the ``content`` blocks whose
    ``type`` is ``"text"``, joined (tool-use blocks carry no text).
    """
    usage = _get(response, "usage")
    content = _get(response, "content")
    text: str | None = None
    if isinstance(content, list | tuple):
        text = "".join(
            block_text
            for block in content
            if _get(block, "type") == "text" and isinstance(block_text := _get(block, "text"), str)
        )
    return Usage(
        prompt_tokens=_tokens(_get(usage, "input_tokens")),
        completion_tokens=_tokens(_get(usage, "output_tokens")),
        finish_reason=_text(_get(response, "stop_reason")),
        response_text=text,
    )


def usage_from_result(result: Any) -> Usage | None:
    """What a decorated function returned, read as a response: text, OpenAI or Anthropic shape."""
    if isinstance(result, str):
        return Usage(response_text=result)
    if _get(result, "choices") is not None:
        return usage_from_openai(result)
    if _get(result, "stop_reason") is not None or isinstance(_get(_get(result, "usage"), "input_tokens"), int):
        return usage_from_anthropic(result)
    return None


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
