"""What every benchmark shares: the event, the counts, temporary spools, backlogs, timing."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentinel_durable as sentinel
from sentinel_durable.spool import Spool, SpoolRecord

#: The size of the event the issue's figures were measured with (its wire JSON, in bytes).
EVENT_BYTES = 479
#: Events per put_many when a backlog is written straight into a spool.
BACKLOG_CHUNK = 5000


@dataclass(frozen=True)
class Scale:
    """How many operations each measurement does; ``--quick`` divides them by ten."""

    kafka_records: int = 100_000
    pq_items: int = 5_000
    naive_events: int = 1_000
    sqlite_rows: int = 100_000
    fsyncs: int = 5_000
    track_calls: int = 20_000
    power_threads: int = 8
    power_calls_per_thread: int = 2_500
    batch_events: int = 100_000
    batch_size: int = 1_000
    drain_backlog: int = 100_000
    latency_backlog: int = 100_000
    latency_sends: int = 5_000
    big_backlog: int = 1_000_000
    constructions: int = 5
    small_backlog: int = 10_000
    size_volume_mb: float = 50.0
    writer_calls: int = 2_000

    def quick(self) -> Scale:
        return Scale(
            kafka_records=self.kafka_records // 10,
            pq_items=self.pq_items // 10,
            naive_events=self.naive_events // 10,
            sqlite_rows=self.sqlite_rows // 10,
            fsyncs=self.fsyncs // 10,
            track_calls=self.track_calls // 10,
            power_threads=self.power_threads,
            power_calls_per_thread=self.power_calls_per_thread // 10,
            batch_events=self.batch_events // 10,
            batch_size=self.batch_size,
            drain_backlog=self.drain_backlog // 10,
            latency_backlog=self.latency_backlog // 10,
            latency_sends=self.latency_sends // 5,
            big_backlog=self.big_backlog // 10,
            constructions=self.constructions,
            small_backlog=self.small_backlog // 10,
            size_volume_mb=self.size_volume_mb / 10,
            writer_calls=self.writer_calls // 10,
        )


# -- the event -------------------------------------------------------------------------------------

#: ``client.track`` keyword arguments; the response text is padded so the JSON is EVENT_BYTES long.
_TRACK_FIELDS: dict[str, Any] = {
    "service": "checkout-api",
    "model": "gpt-4o-mini",
    "prompt": "What is the capital of France? Answer in one word.",
    "prompt_tokens": 12,
    "response": "Paris.",
    "completion_tokens": 2,
    "finish_reason": "stop",
    "latency_ms": 150.5,
    "cost_usd": 0.00042,
    "metadata": {"region": "us-east-1", "env": "prod"},
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}


def _build(fields: dict[str, Any]) -> sentinel.TelemetryEvent:
    builder = (
        sentinel.EventBuilder()
        .service(fields["service"])
        .model(fields["model"])
        .prompt(fields["prompt"], fields["prompt_tokens"])
        .response(fields["response"], fields["completion_tokens"], fields["finish_reason"])
        .latency(fields["latency_ms"])
        .cost(fields["cost_usd"])
        .trace_id(fields["trace_id"])
        .span_id(fields["span_id"])
    )
    for key, value in fields["metadata"].items():
        builder = builder.add_metadata(key, value)
    return builder.build()


def track_fields() -> dict[str, Any]:
    """Keyword arguments for ``client.track`` whose event is EVENT_BYTES of JSON."""
    fields = dict(_TRACK_FIELDS)
    shortfall = EVENT_BYTES - len(_build(fields).to_json())
    filler = "Paris. The capital and largest city of France is Paris, on the Seine. " * 8
    fields["response"] = filler[: len(fields["response"]) + shortfall]
    size = len(_build(fields).to_json())
    if size != EVENT_BYTES:
        raise RuntimeError(f"benchmark event is {size} bytes, not {EVENT_BYTES}")
    return fields


def make_event(fields: dict[str, Any]) -> sentinel.TelemetryEvent:
    """A fresh event (new id and timestamp) from ``track_fields()``."""
    return _build(fields)


def make_events(fields: dict[str, Any], count: int) -> list[sentinel.TelemetryEvent]:
    return [_build(fields) for _ in range(count)]


def backlog_records(template: sentinel.TelemetryEvent, count: int) -> Iterator[SpoolRecord]:
    """``count`` spool records shaped like ``template``, each with its own event id."""
    base = SpoolRecord.from_event(template)
    old_id = base.event_id.encode()
    for _ in range(count):
        event_id = str(uuid.uuid4())
        yield base._replace(data=base.data.replace(old_id, event_id.encode()), event_id=event_id)


def write_backlog(directory: Path, template: sentinel.TelemetryEvent, count: int) -> None:
    """Spool ``count`` events straight into ``directory`` (no client, no broker) and release the file.

    The file is left behind as a dead process's spool would be: the next client adopts it.
    """
    spool = Spool(directory, durability="process", max_spool_bytes=1 << 40)
    try:
        chunk: list[SpoolRecord] = []
        for record in backlog_records(template, count):
            chunk.append(record)
            if len(chunk) == BACKLOG_CHUNK:
                spool.put_many(chunk)
                chunk = []
        spool.put_many(chunk)
    finally:
        spool.close()


def flush_until_delivered(client: sentinel.Client, expected: int, timeout: float) -> int:
    """Call ``client.flush`` until the client delivered ``expected`` events; returns the early Trues.

    ``flush`` is meant to return True only once everything in the spool directory when it
    was called is acked. It once returned True right after construction while the flusher
    thread was still adopting the backlog file (the caller's ``adopt_orphans`` found the
    file locked and skipped it). Early returns are counted, not trusted.
    """
    deadline = time.monotonic() + timeout
    early = 0
    pause = threading.Event()  # never set: a bounded wait between polls
    while True:
        done = client.flush(timeout=max(0.1, deadline - time.monotonic()))
        if client.stats().delivered >= expected:
            return early
        early += done
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{client.stats().delivered} of {expected} events delivered in {timeout:g}s")
        pause.wait(0.01)


# -- places ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def spool_dir(tag: str) -> Iterator[Path]:
    """A private temporary directory for one spool, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"sentinel-bench-{tag}-") as name:
        yield Path(name)


def dir_bytes(directory: Path) -> int:
    """Bytes of every file in ``directory`` (spool files, their WAL and shared memory, locks)."""
    total = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total


def unreachable_broker() -> str:
    """A loopback address where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


_topic_counter = 0


def new_topic(tag: str) -> str:
    """A topic of its own for each measurement, so that reads never mix them."""
    global _topic_counter
    _topic_counter += 1
    return f"bench.{tag}.{os.getpid()}.{_topic_counter}"


# -- numbers ----------------------------------------------------------------------------------------


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def progress(message: str) -> None:
    """One line on stderr while measurements run (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
