"""Our figures: the client's hot path, its batch path, and draining a backlog to Kafka."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench_common import (
    dir_bytes,
    flush_until_delivered,
    make_events,
    median,
    percentile,
    rate,
    spool_dir,
    unreachable_broker,
    write_backlog,
)

import sentinel_durable as sentinel
from sentinel_durable.testing import wait_until

#: How long a client may take to deliver what is left when a measurement is over (the rest
#: stays in its temporary spool, which is then removed).
CLOSE_TIMEOUT = 1.0
#: Upper bound for any one drain; a drain that needs longer is reported as failed.
DRAIN_TIMEOUT = 900.0
#: How often the parent samples the drain child's memory and spool size.
SAMPLE_INTERVAL = 0.1
CHILD = Path(__file__).with_name("bench_drain_child.py")


class Broker(Protocol):
    """What a drain needs of a broker: ``EmbeddedBroker`` (Tansu) and the tests' ``KafkaCluster`` both have it."""

    @property
    def bootstrap_servers(self) -> str: ...

    def read_topic(self, topic: str, expected: int | None = None, timeout: float = ...) -> list[Any]: ...


@contextlib.contextmanager
def _client(directory: Path, **options: Any) -> Iterator[sentinel.Client]:
    client = sentinel.Client(spool_dir=directory, **options)
    try:
        yield client
    finally:
        client.close(timeout=CLOSE_TIMEOUT)


def _warm_up(client: sentinel.Client, fields: dict[str, Any]) -> None:
    """Create the producer and fetch metadata before timing, so the flusher runs at speed."""
    for _ in range(100):
        client.track(**fields)
    if not client.flush(timeout=30):
        raise RuntimeError("warm-up events were not delivered")


def track_rate(
    bootstrap: str, topic: str, fields: dict[str, Any], durability: str, calls: int, *, warm_up: bool = True
) -> float:
    """``client.track`` per call, one thread, the flusher draining to the broker meanwhile; calls/s.

    ``warm_up=False`` when no broker listens (profiling the spool alone).
    """
    with spool_dir(f"track-{durability}") as directory, _client(
        directory, brokers=[bootstrap], topic=topic, durability=durability
    ) as client:
        if warm_up:
            _warm_up(client, fields)
        started = time.perf_counter()
        for _ in range(calls):
            client.track(**fields)
        return rate(calls, time.perf_counter() - started)


def threaded_track_rate(
    bootstrap: str,
    topic: str,
    fields: dict[str, Any],
    durability: str,
    threads: int,
    calls_per_thread: int,
    *,
    warm_up: bool = True,
) -> float:
    """``client.track`` from ``threads`` threads at once; total calls/s."""
    with spool_dir(f"track-{durability}-{threads}t") as directory, _client(
        directory, brokers=[bootstrap], topic=topic, durability=durability
    ) as client:
        if warm_up:
            _warm_up(client, fields)
        start = threading.Barrier(threads + 1)
        failures: list[BaseException] = []

        def run() -> None:
            start.wait()
            try:
                for _ in range(calls_per_thread):
                    client.track(**fields)
            except BaseException as exc:
                failures.append(exc)

        workers = [threading.Thread(target=run, name=f"bench-track-{n}") for n in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        if failures:
            raise failures[0]
        return rate(threads * calls_per_thread, seconds)


def send_batch_rate(
    bootstrap: str, topic: str, events: list[sentinel.TelemetryEvent], batch_size: int, *, warm_up: bool = True
) -> float:
    """``client.send_batch`` of ``batch_size`` prebuilt events at a time; events/s."""
    batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
    with spool_dir("send-batch") as directory, _client(directory, brokers=[bootstrap], topic=topic) as client:
        if warm_up:  # the producer and metadata
            client.send_batch(batches[0][:100])
            client.flush(timeout=30)
        started = time.perf_counter()
        for batch in batches:
            client.send_batch(batch)
        return rate(len(events), time.perf_counter() - started)


@dataclass(frozen=True)
class DrainFigures:
    events_per_s: float
    in_topic: int | None  # records read back from the broker, when checked
    early_flushes: int  # flush() returned True before the backlog was delivered


def drain_rate(
    broker: Broker,
    topic: str,
    template: sentinel.TelemetryEvent,
    backlog: int,
    transport: str = "kafka-python",
    verify: bool = True,
) -> DrainFigures:
    """A backlog already on disk; a client created afterwards; time until ``flush`` returns True.

    (And every event was delivered: see ``flush_until_delivered``.)
    """
    with spool_dir(f"drain-{transport}") as directory:
        write_backlog(directory, template, backlog)
        started = time.perf_counter()
        with _client(directory, brokers=[broker.bootstrap_servers], topic=topic, transport=transport) as client:
            early = flush_until_delivered(client, backlog, DRAIN_TIMEOUT)
            seconds = time.perf_counter() - started
    in_topic = len(broker.read_topic(topic, expected=backlog, timeout=120)) if verify else None
    return DrainFigures(rate(backlog, seconds), in_topic, early)


@dataclass(frozen=True)
class LatencyFigures:
    p50_ms: float
    p99_ms: float
    max_ms: float
    backlog_left: int  # events still pending when the last send returned (> 0: it was still draining)


def send_latency_while_draining(
    bootstrap: str, topic: str, fields: dict[str, Any], template: sentinel.TelemetryEvent, backlog: int, sends: int
) -> LatencyFigures:
    """Latency of each ``client.send`` while the flusher drains a backlog."""
    events = make_events(fields, sends)
    latencies: list[float] = []
    with spool_dir("latency") as directory:
        write_backlog(directory, template, backlog)
        with _client(directory, brokers=[bootstrap], topic=topic) as client:
            wait_until(lambda: client.stats().delivered > 0, timeout=60, description="the drain to start")
            for event in events:
                call = time.perf_counter()
                client.send(event)
                latencies.append(time.perf_counter() - call)
            left = client.stats().spooled
    latencies.sort()
    return LatencyFigures(
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=latencies[-1] * 1000,
        backlog_left=left,
    )


def track_while_draining(
    bootstrap: str, topic: str, fields: dict[str, Any], template: sentinel.TelemetryEvent, backlog: int, calls: int
) -> tuple[float, int]:
    """``client.track`` per call, one thread, while the flusher drains a ``backlog`` written before;
    (calls/s, events of the backlog still pending when the last call returned: > 0, it drained throughout)."""
    with spool_dir("track-draining") as directory:
        write_backlog(directory, template, backlog)
        with _client(directory, brokers=[bootstrap], topic=topic) as client:
            wait_until(lambda: client.stats().delivered > 0, timeout=60, description="the drain to start")
            started = time.perf_counter()
            for _ in range(calls):
                client.track(**fields)
            seconds = time.perf_counter() - started
            left = client.stats().spooled
    return rate(calls, seconds), left


def construction_seconds(repeats: int) -> float:
    """Median time of ``Client(...)`` with no broker listening, each in a fresh spool directory."""
    timings = []
    address = unreachable_broker()
    for n in range(repeats):
        with spool_dir(f"construct-{n}") as directory:
            started = time.perf_counter()
            client = sentinel.Client(brokers=[address], topic="bench.construct", spool_dir=directory)
            timings.append(time.perf_counter() - started)
            client.close(timeout=CLOSE_TIMEOUT)
    return median(timings)


@dataclass(frozen=True)
class BigDrainFigures:
    construct_s: float
    drain_events_per_s: float
    raw_event_mb: float
    rss_after_construct_mb: float
    peak_rss_mb: float
    rss_growth: float  # max RSS in the last quarter of the drain / max RSS in its first quarter
    spool_before_mb: float
    spool_peak_mb: float
    spool_after_mb: float
    early_flushes: int


def big_drain(bootstrap: str, topic: str, directory: Path, count: int, event_bytes: int) -> BigDrainFigures:
    """Drain the ``count``-event backlog in ``directory`` in a child process, sampling its memory and files."""
    before = dir_bytes(directory)
    command = [sys.executable, str(CHILD), "--spool-dir", str(directory), "--brokers", bootstrap, "--topic", topic]
    command += ["--expected", str(count), "--timeout", str(DRAIN_TIMEOUT)]
    samples: list[tuple[float, int, int]] = []  # (wall clock, VmRSS kB, spool bytes)
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        while True:
            rss = _vm_rss_kb(child.pid)
            samples.append((time.time(), rss, dir_bytes(directory)))
            try:
                child.wait(timeout=SAMPLE_INTERVAL)
                break
            except subprocess.TimeoutExpired:
                continue
        output = child.stdout.read() if child.stdout is not None else ""
    if child.returncode != 0:
        raise RuntimeError(f"drain child failed with status {child.returncode}: {output}")
    report = json.loads(output.strip().splitlines()[-1])
    drain = [(rss, size) for at, rss, size in samples if report["constructed_at"] <= at <= report["drained_at"]]
    quarter = max(1, len(drain) // 4)
    first = max((rss for rss, _ in drain[:quarter]), default=0)
    last = max((rss for rss, _ in drain[-quarter:]), default=0)
    return BigDrainFigures(
        construct_s=report["construct_s"],
        drain_events_per_s=rate(count, report["drain_s"]),
        raw_event_mb=count * event_bytes / 1e6,
        rss_after_construct_mb=report["rss_after_construct_kb"] / 1024,
        peak_rss_mb=report["vm_hwm_kb"] / 1024,
        rss_growth=last / first if first else float("nan"),
        spool_before_mb=before / 1e6,
        spool_peak_mb=max(before, *(size for _, _, size in samples)) / 1e6,
        spool_after_mb=report["spool_after_bytes"] / 1e6,
        early_flushes=report["early_flushes"],
    )


def _vm_rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
