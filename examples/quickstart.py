"""Offline-first in a few lines: send with the broker down, then deliver when it is back.

Run: python examples/quickstart.py   (starts an embedded Kafka-compatible broker for you)
"""

from __future__ import annotations

import logging
import socket
import tempfile

import sentinel_durable as sentinel
from sentinel_durable.testing import EmbeddedBroker

logging.getLogger("kafka").setLevel(logging.CRITICAL)  # kafka-python logs every reconnect attempt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    port = free_port()
    spool_dir = tempfile.mkdtemp(prefix="sentinel-quickstart-")

    # No broker is running yet: the client is created at once and every send lands on disk.
    client = sentinel.Client(brokers=[f"127.0.0.1:{port}"], topic="llm.telemetry", spool_dir=spool_dir)
    for n in range(100):
        client.track(service="quickstart", model="gpt-4", prompt=f"question {n}", response="answer",
                     latency_ms=120.0, prompt_tokens=5, completion_tokens=2, cost_usd=0.0001)  # fmt: skip
    print(f"broker down: {client.stats().spooled + client.stats().in_flight} events waiting on disk")

    # The broker comes up: the background flusher delivers the backlog.
    with EmbeddedBroker(port=port) as broker:
        delivered = client.flush(timeout=30)
        print(f"broker up:   flush() -> {delivered}, {client.stats().delivered} delivered")
        client.close()
        print(f"in the topic: {len(broker.read_topic('llm.telemetry', expected=100))} records")


if __name__ == "__main__":
    main()
