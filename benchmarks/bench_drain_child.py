"""Run by ``bench_ours.big_drain`` in a process of its own, so that its memory is the drain's alone.

Creates a client on a spool directory that already holds a backlog, flushes it to Kafka and
prints one JSON line: how long construction and the drain took (until ``flush`` returned
True and every event of the backlog was delivered), its RSS after construction,
its peak RSS (VmHWM) and the spool's size once drained (client still open).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from bench_common import dir_bytes, flush_until_delivered

import sentinel_durable as sentinel


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spool-dir", type=Path, required=True)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", type=int, required=True, help="events in the backlog")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    started = time.perf_counter()
    client = sentinel.Client(brokers=[args.brokers], topic=args.topic, spool_dir=args.spool_dir)
    constructed = time.perf_counter()
    constructed_at = time.time()
    rss_after_construct = _status_kb("VmRSS")
    early_flushes = flush_until_delivered(client, args.expected, args.timeout)
    drained = time.perf_counter()
    drained_at = time.time()
    spool_after = dir_bytes(args.spool_dir)
    delivered = client.stats().delivered
    client.close(timeout=5.0)
    report = {
        "construct_s": constructed - started,
        "drain_s": drained - started,
        "constructed_at": constructed_at,
        "drained_at": drained_at,
        "early_flushes": early_flushes,
        "delivered": delivered,
        "rss_after_construct_kb": rss_after_construct,
        "vm_hwm_kb": _status_kb("VmHWM"),
        "spool_after_bytes": spool_after,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
