"""OpenTelemetry GenAI spans, from any instrumentation, delivered durably: ``SentinelSpanExporter``.

Run: pip install 'sentinel-durable[otel,openai]' opentelemetry-instrumentation-openai
     OPENAI_API_KEY=... SENTINEL_BROKERS=localhost:9092 python examples/otel_genai.py "What is Kafka?"

OpenLLMetry's OpenAI instrumentation makes a span of each call (GenAI semantic conventions);
the exporter turns each into an event and spools it — export() never touches the network, so
spans are not lost when Kafka is down, as they are with an in-memory exporter. Other spans of
the application (here "answer-question") are ignored. ``OPENAI_BASE_URL`` points the client at
another OpenAI-compatible server.
"""

from __future__ import annotations

import os
import sys

import sentinel_durable as sentinel


def main(argv: list[str]) -> int:
    try:
        import openai  # type: ignore[import-not-found, unused-ignore]
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor  # type: ignore[import-not-found, unused-ignore]
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        print(f"This example needs {exc.name}: pip install 'sentinel-durable[otel,openai]' "
              "opentelemetry-instrumentation-openai", file=sys.stderr)  # fmt: skip
        return 2
    if not os.environ.get("OPENAI_API_KEY"):
        print("Set OPENAI_API_KEY to call OpenAI (and SENTINEL_BROKERS for Kafka).", file=sys.stderr)
        return 2
    question = " ".join(argv) or "What is Kafka, in one sentence?"
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")

    client = sentinel.Client.from_env()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-example"}))
    provider.add_span_processor(BatchSpanProcessor(sentinel.SentinelSpanExporter(client)))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    try:
        with provider.get_tracer("otel-example").start_as_current_span("answer-question"):
            completion = openai.OpenAI().chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}]
            )
        print(completion.choices[0].message.content)
    except openai.OpenAIError as exc:
        print(f"OpenAI call failed; its span is exported with the error: {exc}", file=sys.stderr)
        return 1
    finally:
        provider.force_flush()  # the batch processor hands its spans to the exporter: they are spooled
        delivered = client.flush(timeout=5.0)
        print(f"spans spooled; {'delivered' if delivered else 'on disk, delivered when Kafka is reachable'}")
        OpenAIInstrumentor().uninstrument()
        provider.shutdown()  # closes the client too
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
