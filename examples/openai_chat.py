"""Track OpenAI chat completions: the LLM-Sentinel Go SDK's OpenAI integration, in Python.

Run: pip install openai
     OPENAI_API_KEY=... SENTINEL_BROKERS=localhost:9092 python examples/openai_chat.py "What is 2 + 2?"

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
PRICES_PER_MILLION = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    input_price, output_price = PRICES_PER_MILLION.get(model, (0.0, 0.0))
    return (prompt_tokens * input_price + completion_tokens * output_price) / 1_000_000


def tracked_chat(
    openai_client: Any, sentinel_client: sentinel.Client, *, model: str, prompt: str, service: str = "openai-chat"
) -> tuple[str, str]:
    """Ask ``model`` through ``openai_client`` (an ``openai.OpenAI``) and track the call.

    Returns the answer and the event id. A failed call is tracked with its error, then re-raised.
    """
    started = time.perf_counter()
    try:
        completion = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    except Exception as exc:
        sentinel_client.track(
            service=service, model=model, prompt=prompt, response="", finish_reason="error",
            latency_ms=(time.perf_counter() - started) * 1000, errors=[f"{type(exc).__name__}: {exc}"],
            metadata={"provider": "openai"},
        )  # fmt: skip
        raise
    latency_ms = (time.perf_counter() - started) * 1000
    choice = completion.choices[0]
    answer = choice.message.content or ""  # None when the model only called tools
    usage = completion.usage
    event_id = sentinel_client.track(
        service=service, model=model, prompt=prompt, response=answer, latency_ms=latency_ms,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cost_usd=cost_usd(model, usage.prompt_tokens, usage.completion_tokens),
        finish_reason=choice.finish_reason or "", metadata={"provider": "openai"},
    )  # fmt: skip
    return answer, event_id


def main(argv: list[str]) -> int:
    try:
        import openai  # type: ignore[import-not-found, unused-ignore]  # optional: only this example needs it
    except ImportError:
        print("This example needs the OpenAI client: pip install openai", file=sys.stderr)
        return 2
    if not os.environ.get("OPENAI_API_KEY"):
        print("Set OPENAI_API_KEY to call OpenAI (and SENTINEL_BROKERS for Kafka).", file=sys.stderr)
        return 2
    prompt = " ".join(argv) or "What is the capital of France?"
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    with sentinel.Client.from_env() as client:
        try:
            answer, event_id = tracked_chat(openai.OpenAI(), client, model=model, prompt=prompt)
        except openai.OpenAIError as exc:
            print(f"OpenAI call failed, and was tracked with its error: {exc}", file=sys.stderr)
            return 1
        print(answer)
        delivered = client.flush(timeout=5.0)
        print(f"event {event_id}: {'delivered' if delivered else 'on disk, delivered when Kafka is reachable'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
