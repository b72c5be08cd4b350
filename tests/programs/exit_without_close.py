"""Tracks COUNT events and exits without calling close(): the atexit hook must deliver them.

Usage: python exit_without_close.py SPOOL_DIR BROKER COUNT TOPIC
"""

from __future__ import annotations

import sys

import sentinel_durable as sentinel


def main() -> None:
    spool_dir, broker, count, topic = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    client = sentinel.Client(brokers=[broker], topic=topic, spool_dir=spool_dir, shutdown_timeout=20)
    for n in range(count):
        client.track(service="job", model="m", prompt=f"p{n}", response="r", latency_ms=1.0)


if __name__ == "__main__":
    main()
