"""Every OpenAI call tracked, with one line: ``client.instrument(openai.OpenAI(), service=...)``.

Run: pip install 'sentinel-durable[openai]'
     OPENAI_API_KEY=... SENTINEL_BROKERS=localhost:9092 python examples/openai_instrumented.py "What is Kafka?"

The question is asked twice, once as a plain call and once streamed; each call is one event
(model, prompt, answer, tokens, finish reason, latency, cost; a failed call with its error),
written to the spool first, so it is kept with Kafka down. ``OPENAI_BASE_URL`` points the client
at another OpenAI-compatible server; ``OPENAI_MODEL`` picks the model (gpt-4o-mini).
"""

from __future__ import annotations

import os
import sys

import sentinel_durable as sentinel

#: USD per 1,000 tokens (input, output). Check your provider's current prices.
PRICES = {"gpt-4o": (0.0025, 0.01), "gpt-4o-mini": (0.00015, 0.0006)}


def main(argv: list[str]) -> int:
    try:
        import openai  # type: ignore[import-not-found, unused-ignore]  # the [openai] extra
    except ImportError:
        print("This example needs the OpenAI client: pip install 'sentinel-durable[openai]'", file=sys.stderr)
        return 2
    if not os.environ.get("OPENAI_API_KEY"):
        print("Set OPENAI_API_KEY to call OpenAI (and SENTINEL_BROKERS for Kafka).", file=sys.stderr)
        return 2
    question = " ".join(argv) or "What is Kafka, in one sentence?"
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    messages = [{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": question}]
    with sentinel.Client.from_env() as client:
        llm = client.instrument(openai.OpenAI(), service="openai-example", prices=PRICES)
        try:
            completion = llm.chat.completions.create(model=model, messages=messages)
            print(completion.choices[0].message.content)
            for chunk in llm.chat.completions.create(model=model, messages=messages, stream=True):
                print(chunk.choices[0].delta.content or "", end="", flush=True)
            print()
        except openai.OpenAIError as exc:
            print(f"OpenAI call failed, and was tracked with its error: {exc}", file=sys.stderr)
            return 1
        delivered = client.flush(timeout=5.0)
        stats = client.stats()
        where = "delivered" if delivered else "on disk, delivered when Kafka is reachable"
        print(f"{stats.delivered + stats.spooled} events {where}; capture errors: {stats.capture_errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
