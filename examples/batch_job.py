"""A batch job that must not lose telemetry: spool every event, then wait for Kafka before exiting.

Run: python examples/batch_job.py --brokers localhost:9092 --count 1000 --timeout 30

Events are built with ``EventBuilder`` and spooled in chunks with ``send_batch`` (one disk
transaction per chunk). At the end ``flush`` waits for Kafka's acks: the exit status is 0 when
every event was acked within ``--timeout``, 1 otherwise. Undelivered events stay on disk in
``--spool-dir``; the next client that opens that directory delivers them. Options not given
come from the ``SENTINEL_*`` environment variables (``Client.from_env``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import sentinel_durable as sentinel

logging.getLogger("kafka").setLevel(logging.CRITICAL)  # kafka-python logs every reconnect attempt


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--brokers", help="comma-separated host:port list (default: SENTINEL_BROKERS)")
    parser.add_argument("--topic", help="Kafka topic (default: SENTINEL_TOPIC)")
    parser.add_argument("--spool-dir", help="spool directory (default: SENTINEL_SPOOL_DIR or the user state dir)")
    parser.add_argument("--count", type=int, default=1000, help="events to send (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=200, help="events per send_batch call (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for acks (default: %(default)s)")
    return parser.parse_args(argv)


def build_events(config: sentinel.Config, first: int, count: int) -> list[sentinel.TelemetryEvent]:
    """Stand-ins for the LLM calls of one chunk of the job."""
    return [
        sentinel.EventBuilder(config)  # the client's text limit and validation settings
        .service("nightly-summaries").model("gpt-4o-mini")
        .prompt(f"Summarise document {n}", 6)
        .response(f"Summary of document {n}.", 5, "stop")
        .latency(420.0).cost(0.00002)
        .add_metadata("document", str(n))
        .build()
        for n in range(first, first + count)
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.brokers:
        overrides["brokers"] = args.brokers.split(",")
    if args.topic:
        overrides["topic"] = args.topic
    if args.spool_dir:
        overrides["spool_dir"] = args.spool_dir
    client = sentinel.Client.from_env(**overrides)
    try:
        for first in range(0, args.count, args.chunk):
            client.send_batch(build_events(client.config, first, min(args.chunk, args.count - first)))
        delivered = client.flush(timeout=args.timeout)
        stats = client.stats()
    finally:
        client.close(timeout=1.0)  # flush() already waited; what is left stays on disk
    print(
        f"{'delivered' if delivered else 'NOT delivered'}: {args.count} sent, {stats.delivered} acked,"
        f" {stats.spooled + stats.in_flight} on disk, {stats.dead_lettered} dead-lettered,"
        f" broker_connected={stats.broker_connected}, last_error={stats.last_error}"
    )
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
