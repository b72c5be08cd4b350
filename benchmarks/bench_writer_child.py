"""Run by ``bench_scaling.processes_writing``: one of N processes tracking into one spool directory.

Creates its client, says "ready", waits for "go" on stdin (all N start together), tracks
``--calls`` events and prints one JSON line: when it started and ended (``time.time()``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from bench_common import track_fields

import sentinel_durable as sentinel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spool-dir", required=True)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--calls", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    fields = track_fields()
    with sentinel.Client(brokers=[args.brokers], topic=args.topic, spool_dir=args.spool_dir) as client:
        print("ready", flush=True)
        sys.stdin.readline()  # "go"
        started = time.time()
        for _ in range(args.calls):
            client.track(**fields)
        ended = time.time()
        print(json.dumps({"started": started, "ended": ended}), flush=True)


if __name__ == "__main__":
    main()
