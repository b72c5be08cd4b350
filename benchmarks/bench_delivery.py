"""The delivery-process experiment (issue 15): what ``track`` costs while its spool is drained by
the flusher *thread* (the product) against the same drain done by a separate *process*
(``bench_delivery_child.py``), with ``track`` and the flusher idle as the baseline — all in one run.

    .venv/bin/python benchmarks/bench_delivery.py [--calls 5000] [--backlog 100000] [--rounds 3]

Each round measures the four cases (the flusher thread also with the confluent transport), one after
the other: the tracking process's calls/s and the latency of each call (p50 / p99 / max), and how
fast the backlog drained meanwhile. The tracking client of the idle and process cases points at a
port where nothing listens, with a long backoff: its own flusher sleeps and does not compete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import (
    make_event,
    make_events,
    new_topic,
    percentile,
    rate,
    spool_dir,
    track_fields,
    unreachable_broker,
    write_backlog,
)
from bench_delivery_child import BATCH as CHILD_BATCH  # its first batch, acked before its clock starts

import sentinel_durable as sentinel
from sentinel_durable.event import new_event_id
from sentinel_durable.spool import spool_files
from sentinel_durable.testing import EmbeddedBroker, wait_until

CHILD = Path(__file__).with_name("bench_delivery_child.py")
BACKLOG_CHUNK = 1000


@dataclass(frozen=True)
class Figures:
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    drained_per_s: float | None  # the drain's rate while tracking (None: no drain)


def _timed_calls(client: sentinel.Client, fields: dict[str, Any], calls: int) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for _ in range(calls):
        call = time.perf_counter()
        client.track(**fields)
        latencies.append(time.perf_counter() - call)
    return time.perf_counter() - started, sorted(latencies)


def _figures(calls: int, seconds: float, latencies: list[float], drained: float | None) -> Figures:
    return Figures(rate(calls, seconds), percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000,
                   latencies[-1] * 1000, drained)  # fmt: skip


@contextlib.contextmanager
def _idle_client(directory: Path) -> Iterator[sentinel.Client]:
    """A client whose flusher sleeps: nothing listens at its broker, and it backs off for a minute."""
    client = sentinel.Client(brokers=[unreachable_broker()], topic="bench.delivery", spool_dir=directory,
                             retry_backoff=60.0, max_retry_backoff=60.0, shutdown_timeout=0)  # fmt: skip
    try:
        yield client
    finally:
        client.close(timeout=0)


def _spool_backlog(client: sentinel.Client, fields: dict[str, Any], backlog: int) -> None:
    events = make_events(fields, BACKLOG_CHUNK)
    for _ in range(backlog // BACKLOG_CHUNK):
        client.send_batch([event.model_copy(update={"event_id": new_event_id()}) for event in events])


def idle(fields: dict[str, Any], calls: int) -> Figures:
    with spool_dir("delivery-idle") as directory, _idle_client(directory) as client:
        seconds, latencies = _timed_calls(client, fields, calls)
    return _figures(calls, seconds, latencies, None)


def flusher_thread(bootstrap: str, fields: dict[str, Any], backlog: int, calls: int,
                   transport: str = "kafka-python") -> Figures:
    with spool_dir("delivery-thread") as directory:
        write_backlog(directory, make_event(fields), backlog)  # left behind as a dead process's file
        client = sentinel.Client(brokers=[bootstrap], topic=new_topic("delivery-thread"), spool_dir=directory,
                                 transport=transport)  # fmt: skip
        try:
            wait_until(lambda: client.stats().delivered > 0, timeout=60, description="the drain to start")
            before = client.stats().delivered
            seconds, latencies = _timed_calls(client, fields, calls)
            drained = client.stats().delivered - before
            if client.stats().spooled == 0:
                raise RuntimeError("the backlog ran out before the calls did: raise --backlog")
        finally:
            client.close(timeout=0)
    return _figures(calls, seconds, latencies, rate(drained, seconds))


def delivery_process(bootstrap: str, fields: dict[str, Any], backlog: int, calls: int) -> Figures:
    with spool_dir("delivery-process") as directory, _idle_client(directory) as client:
        _spool_backlog(client, fields, backlog)
        (path,) = spool_files(directory)
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "--file", str(path), "--brokers", bootstrap,
             "--topic", new_topic("delivery-process"), "--count", str(backlog + calls)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=CHILD.parent,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            assert child.stdin is not None
            if child.stdout.readline().strip() != "started":
                raise RuntimeError("the delivery process did not start draining")
            drain_started = time.perf_counter()
            seconds, latencies = _timed_calls(client, fields, calls)
            tracked_for = time.perf_counter() - drain_started
            child.stdin.close()  # stop now
            report = json.loads(child.stdout.readline())
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if report["delivered"] + CHILD_BATCH >= backlog + calls or report["seconds"] < tracked_for * 0.9:
            raise RuntimeError("the backlog ran out before the calls did: raise --backlog")
    return _figures(calls, seconds, latencies, rate(report["delivered"], report["seconds"]))


def _line(name: str, figures: Figures, idle_rate: float) -> str:
    drained = f"{figures.drained_per_s:>9,.0f} events/s" if figures.drained_per_s else " " * 18
    return (f"{name:<44} {figures.calls_per_s:>8,.0f} calls/s  {figures.calls_per_s / idle_rate:5.2f}x idle"
            f"   p50 {figures.p50_ms:5.2f}  p99 {figures.p99_ms:6.2f}  max {figures.max_ms:7.2f} ms"
            f"   drain {drained}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    fields = track_fields()
    with EmbeddedBroker() as broker:
        for round_ in range(1, args.rounds + 1):
            base = idle(fields, args.calls)
            thread = flusher_thread(broker.bootstrap_servers, fields, args.backlog, args.calls)
            process = delivery_process(broker.bootstrap_servers, fields, args.backlog, args.calls)
            confluent = flusher_thread(broker.bootstrap_servers, fields, args.backlog, args.calls, "confluent")
            print(f"round {round_}")
            print(_line("track, flusher idle", base, base.calls_per_s))
            print(_line("track, flusher thread draining", thread, base.calls_per_s))
            print(_line("track, delivery process draining", process, base.calls_per_s))
            print(_line("track, flusher thread (confluent) draining", confluent, base.calls_per_s), flush=True)


if __name__ == "__main__":
    main()
