"""Tracks COUNT events into SPOOL_DIR with no broker reachable, reports, then waits to be killed.

Usage: python send_then_die.py SPOOL_DIR BROKER COUNT TOPIC
"""

from __future__ import annotations

import sys

import sentinel_durable as sentinel


def main() -> None:
    spool_dir, broker, count, topic = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    client = sentinel.Client(brokers=[broker], topic=topic, spool_dir=spool_dir)
    ids = [client.track(service="batch", model="m", prompt=f"p{n}", response="r", latency_ms=1.0) for n in range(count)]
    sys.stdout.write("".join(f"{event_id}\n" for event_id in ids) + "sent\n")
    sys.stdout.flush()
    sys.stdin.read()  # block until the test kills us (SIGKILL: no atexit, no close)


if __name__ == "__main__":
    main()
