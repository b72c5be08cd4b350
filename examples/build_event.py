"""Build a telemetry event with the fluent builder and print its wire JSON.

Run: python examples/build_event.py
"""

from __future__ import annotations

import json

import sentinel_durable as sentinel


def main() -> None:
    event = (
        sentinel.EventBuilder()
        .service("checkout-assistant")
        .model("gpt-4")
        .prompt("What is the capital of France?", 8)
        .response("Paris.", 7, "stop")
        .latency(150.5)
        .cost(0.001)
        .add_metadata("region", "us-east-1")
        .trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
        .span_id("00f067aa0ba902b7")
        .build()
    )
    print("The Kafka record value LLM-Sentinel ingests:")
    print(json.dumps(json.loads(event.to_json()), indent=2))

    try:
        sentinel.EventBuilder().service("svc").model("gpt-4").prompt("hi", -1).build()
    except sentinel.ValidationError as exc:
        print(f"\nA bad event is refused before it is spooled: {exc}  [field={exc.field!r}]")


if __name__ == "__main__":
    main()
