"""Track Anthropic messages: the LLM-Sentinel Go SDK's Anthropic integration, in Python.

Run: pip install anthropic
     ANTHROPIC_API_KEY=... SENTINEL_BROKERS=localhost:9092 python examples/anthropic_messages.py "What is 2 + 2?"

The call is timed, its usage read from the response, and one event tracked, failed calls
included (with the error in ``errors``). Tracking lands on disk, so it works with Kafka down.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import sentinel_durable as sentinel

#: USD per million tokens (input, output). Check your provider's current prices.
PRICES_PER_MILLION = {"claude-sonnet-4-5": (3.00, 15.00), "claude-haiku-4-5": (1.00, 5.00)}


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    input_price, output_price = PRICES_PER_MILLION.get(model, (0.0, 0.0))
    return (input_tokens * input_price + output_tokens * output_price) / 1_000_000


def tracked_message(
    anthropic_client: Any,
    sentinel_client: sentinel.Client,
    *,
    model: str,
    prompt: str,
    max_tokens: int = 1024,
    service: str = "anthropic-messages",
) -> tuple[str, str]:
    """Ask ``model`` through ``anthropic_client`` (an ``anthropic.Anthropic``) and track the call.

    Returns the answer and the event id. A failed call is tracked with its error, then re-raised.
    """
    started = time.perf_counter()
    try:
        message = anthropic_client.messages.create(
            model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
        )
    except Exception as exc:
        sentinel_client.track(
            service=service, model=model, prompt=prompt, response="", finish_reason="error",
            latency_ms=(time.perf_counter() - started) * 1000, errors=[f"{type(exc).__name__}: {exc}"],
            metadata={"provider": "anthropic"},
        )  # fmt: skip
        raise
    latency_ms = (time.perf_counter() - started) * 1000
    # The answer is the text blocks of the content; tool-use blocks carry no text.
    answer = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
    usage = message.usage
    event_id = sentinel_client.track(
        service=service, model=model, prompt=prompt, response=answer, latency_ms=latency_ms,
        prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens,
        cost_usd=cost_usd(model, usage.input_tokens, usage.output_tokens),
        finish_reason=message.stop_reason or "", metadata={"provider": "anthropic"},
    )  # fmt: skip
    return answer, event_id


def main(argv: list[str]) -> int:
    try:
        import anthropic  # type: ignore[import-not-found, unused-ignore]  # optional: only this example needs it
    except ImportError:
        print("This example needs the Anthropic client: pip install anthropic", file=sys.stderr)
        return 2
    if not os.environ.get("ANTHROPIC_API_KEY"):
        print("Set ANTHROPIC_API_KEY to call Anthropic (and SENTINEL_BROKERS for Kafka).", file=sys.stderr)
        return 2
    prompt = " ".join(argv) or "What is the capital of France?"
    model = os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5")
    with sentinel.Client.from_env() as client:
        try:
            answer, event_id = tracked_message(anthropic.Anthropic(), client, model=model, prompt=prompt)
        except anthropic.AnthropicError as exc:
            print(f"Anthropic call failed, and was tracked with its error: {exc}", file=sys.stderr)
            return 1
        print(answer)
        delivered = client.flush(timeout=5.0)
        print(f"event {event_id}: {'delivered' if delivered else 'on disk, delivered when Kafka is reachable'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
