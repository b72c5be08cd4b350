"""Run one workload of ``run.py`` on its own, for a profiler to watch.

    py-spy record -t -i -f raw -o track.txt -- .venv/bin/python benchmarks/profile_one.py track
    py-spy record -t -g -o batch.svg -- .venv/bin/python benchmarks/profile_one.py send-batch --no-broker
    .venv/bin/python -m cProfile -s tottime benchmarks/profile_one.py track --no-broker | head -40

``--no-broker`` points the client at a port where nothing listens, so the flusher stays in
backoff: what is left is the caller's path and the spool alone. With the broker (the default)
the flusher drains meanwhile, as in ``run.py``. cProfile sees the main thread only; py-spy
(``-t`` per thread, ``-i`` with idle time, ``-g`` GIL holders only) sees them all.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

import bench_ours as ours
from bench_common import Scale, make_event, make_events, new_topic, track_fields, unreachable_broker

from sentinel_durable.testing import EmbeddedBroker

WORKLOADS = ("track", "send-batch", "drain", "latency")


@contextlib.contextmanager
def _broker(enabled: bool) -> Iterator[EmbeddedBroker | None]:
    if not enabled:
        yield None
        return
    with EmbeddedBroker() as broker:
        yield broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--durability", default="process", choices=("process", "power", "async"))
    parser.add_argument("--threads", type=int, default=1, help="track from this many threads")
    parser.add_argument("--count", type=int, default=None, help="calls, events or backlog size")
    parser.add_argument("--no-broker", action="store_true", help="track/send-batch with no broker listening")
    parser.add_argument("--transport", default="kafka-python", choices=("kafka-python", "confluent"), help="drain's")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    scale = Scale()
    fields = track_fields()
    if args.no_broker and args.workload in ("drain", "latency"):
        parser.error(f"{args.workload} needs the broker")
    with _broker(not args.no_broker) as broker:
        bootstrap = broker.bootstrap_servers if broker is not None else unreachable_broker()
        live = broker is not None
        topic = new_topic(args.workload)
        if args.workload == "track" and args.threads == 1:
            count = args.count or scale.track_calls
            result = ours.track_rate(bootstrap, topic, fields, args.durability, count, warm_up=live)
            print(f"track ({args.durability}): {result:,.0f} calls/s", file=sys.stderr)
        elif args.workload == "track":
            per_thread = (args.count or scale.track_calls) // args.threads
            result = ours.threaded_track_rate(
                bootstrap, topic, fields, args.durability, args.threads, per_thread, warm_up=live
            )
            print(f"track ({args.durability}, {args.threads} threads): {result:,.0f} calls/s", file=sys.stderr)
        elif args.workload == "send-batch":
            events = make_events(fields, args.count or scale.batch_events)
            result = ours.send_batch_rate(bootstrap, topic, events, scale.batch_size, warm_up=live)
            print(f"send_batch: {result:,.0f} events/s", file=sys.stderr)
        elif args.workload == "drain" and broker is not None:
            drain = ours.drain_rate(broker, topic, make_event(fields), args.count or scale.drain_backlog,
                                    args.transport, verify=False)
            print(f"drain: {drain.events_per_s:,.0f} events/s", file=sys.stderr)
        elif broker is not None:
            latency = ours.send_latency_while_draining(
                bootstrap, topic, fields, make_event(fields), args.count or scale.latency_backlog, scale.latency_sends
            )
            print(f"send latency while draining: p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
