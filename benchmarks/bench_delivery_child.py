"""A delivery *process* for the experiment of ``bench_delivery.py``: drains another process's
spool file to Kafka from a process of its own, so that it shares no GIL with the process that
writes the file.

It is the flusher's loop reduced to what costs time — claim 1,000 pending rows in spool order,
send them with the kafka-python transport (the same settings, key and headers as the client's),
delete what was acked — on its own SQLite connection to the writer's file (WAL: the writer's
inserts and this process's reads and deletes take turns on the file's write lock only). It is
an experiment, not a product: no retries, outages, adoption or locks. Prints ``started`` once
the first batch is acked, then, when stdin closes or ``--count`` events are delivered, one JSON
line with what it delivered after that first batch, and in how long.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from sentinel_durable.config import Config
from sentinel_durable.records import ClaimedRecord
from sentinel_durable.spool import schema
from sentinel_durable.transports import Outcome
from sentinel_durable.transports.kafka_python import KafkaPythonTransport

BATCH = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, required=True, help="the writer's spool file")
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True, help="stop once this many are delivered")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    config = Config(brokers=[args.brokers], topic=args.topic)
    transport = KafkaPythonTransport(config)
    connection, _ = schema.connect(args.file, durability="process", busy_timeout=10.0, topic=None)
    cursor, delivered, started_at = 0, 0, 0.0
    try:
        while delivered < args.count and not stop.is_set():
            rows = connection.execute(schema.SQL_CLAIM, (cursor, BATCH)).fetchall()
            if not rows:
                stop.wait(0.005)
                continue
            records = [ClaimedRecord(*row) for row in rows]
            cursor = records[-1].row_id + 1
            results = transport.deliver(records, timeout=30.0)
            acked = [record.row_id for record, result in zip(records, results, strict=True)
                     if result.outcome is Outcome.DELIVERED]  # fmt: skip
            if len(acked) != len(records):
                raise SystemExit(f"delivery failed: {[r.error for r in results if r.error][:1]}")
            connection.execute(schema.SQL_DELETE_PENDING_RANGE, (acked[0], acked[-1]))
            if not started_at:  # the clock starts once the first batch is acked: that one is not counted
                started_at = time.perf_counter()
                print("started", flush=True)
            else:
                delivered += len(acked)
        seconds = time.perf_counter() - started_at
    finally:
        transport.close(5.0)
        connection.close()
    print(json.dumps({"delivered": delivered, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
