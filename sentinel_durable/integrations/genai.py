"""What the integrations share: LLM messages rendered as readable text, and the cost of a call.

**The text format** (the prompt and response of events made by ``SentinelSpanExporter`` and
``client.instrument``). Messages are read in the OpenTelemetry GenAI shape, ``{"role": ...,
"parts": [...]}``; the OpenAI and Anthropic request shapes are turned into it first. A single
message is its text alone; several are each ``"role: text"``, separated by a blank line::

    system: Be terse.

    user: What is Kafka?

A message's text is its text parts joined by newlines; a tool call is ``[tool call: name]``, a
tool's result ``[tool result: text]``, any other part ``[its type]`` (``[image]``, ``[file]``...).
System instructions given apart (OpenAI's ``instructions``, Anthropic's ``system``) come first,
as a ``system`` message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError

__all__ = [
    "Part",
    "Prices",
    "cost_function",
    "message",
    "render_messages",
    "render_parts",
    "text_part",
]

#: One part of a message, in the GenAI shape: ``{"type": "text", "content": "..."}`` etc.
Part = Mapping[str, Any]
#: A price table: model -> (USD per 1,000 input tokens, USD per 1,000 output tokens); or a
#: callable ``(model, input_tokens, output_tokens) -> USD``.
Prices = Mapping[str, tuple[float, float]] | Callable[[str, int, int], float]

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def message(role: str, parts: Iterable[Part]) -> dict[str, Any]:
    return {"role": role, "parts": list(parts)}


def render_parts(parts: Any) -> str:
    """The text of a message's parts (see the module docstring)."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, Sequence):
        return ""
    return "\n".join(text for part in parts if (text := _part_text(part)))


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return ""
    kind = part.get("type")
    if kind == "text" or (kind is None and "content" in part):
        content = part.get("content")
        return content if isinstance(content, str) else ""
    if kind == "tool_call":
        return f"[tool call: {part.get('name') or 'unnamed'}]"
    if kind == "tool_call_response":
        response = part.get("response", part.get("result"))
        text = response if isinstance(response, str) else _json(response)
        return f"[tool result: {text}]"
    return f"[{kind}]" if isinstance(kind, str) and kind else ""


def render_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """Messages as text: one alone, several role-prefixed and separated by blank lines."""
    rendered = [(str(item.get("role") or "user"), render_parts(item.get("parts"))) for item in messages]
    if len(rendered) == 1:
        return rendered[0][1]
    return "\n\n".join(f"{role}: {text}" for role, text in rendered)


def _json(value: Any) -> str:
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


# -- cost ---------------------------------------------------------------------------------------


def cost_function(prices: Prices | None) -> Callable[[str, int, int], float]:
    """``(model, input_tokens, output_tokens) -> USD`` from a price table (checked now) or a callable.

    A table's model is found as given, else without a date suffix (``gpt-4o-2024-08-06`` is
    priced as ``gpt-4o``); a model not in the table costs 0. ``ConfigError`` names a bad entry.
    """
    if prices is None:
        return _free
    if callable(prices):
        return _checked_callable(prices)
    if not isinstance(prices, Mapping):
        raise ConfigError(
            "prices",
            "must be a mapping model -> (input, output) USD per 1,000 tokens, or a callable",
            prices,
        )
    table: dict[str, tuple[float, float]] = {}
    for model, price in prices.items():
        if not isinstance(model, str) or not model:
            raise ConfigError("prices", "each model name must be a non-empty string", model)
        table[model] = _price_pair(model, price)

    def cost(model: str, input_tokens: int, output_tokens: int) -> float:
        price = table.get(model)
        if price is None:
            price = table.get(_DATE_SUFFIX.sub("", model))
        if price is None:
            return 0.0
        return (input_tokens * price[0] + output_tokens * price[1]) / 1000.0

    return cost


def _price_pair(model: object, price: object) -> tuple[float, float]:
    if (
        isinstance(price, Sequence)
        and not isinstance(price, str)
        and len(price) == 2
        and all(_is_price(value) for value in price)
    ):
        return float(price[0]), float(price[1])
    raise ConfigError(f"prices[{model!r}]", "must be (input, output): two numbers >= 0, USD per 1,000 tokens", price)


def _is_price(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _free(model: str, input_tokens: int, output_tokens: int) -> float:
    return 0.0


def _checked_callable(prices: Callable[[str, int, int], float]) -> Callable[[str, int, int], float]:
    def cost(model: str, input_tokens: int, output_tokens: int) -> float:
        value = prices(model, input_tokens, output_tokens)
        if not _is_price(value):
            raise ValueError(f"the prices callable returned {type(value).__name__} for {model!r}, not a number >= 0")
        return float(value)

    return cost
