"""The scaling rows of issue 15: event size, backlog size, processes writing one spool directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_baselines as baselines
import bench_ours as ours
from bench_common import make_event, rate, spool_dir

import sentinel_durable as sentinel
from sentinel_durable.spool import ClaimedRecord, SpoolRecord

WRITER = Path(__file__).with_name("bench_writer_child.py")
#: Event sizes of the size rows, and the volume each drains (fewer events for bigger ones).
SIZES_KB = (0.5, 10, 100)


def sized_event(fields: dict[str, Any], kilobytes: float) -> sentinel.TelemetryEvent:
    """An event of about ``kilobytes`` KB of JSON (its response text padded)."""
    base = len(make_event(fields).to_json())
    padding = max(0, int(kilobytes * 1000) - base + len(fields["response"]))
    return make_event({**fields, "response": ("Paris is the capital of France. " * (padding // 32 + 1))[:padding]})


@dataclass(frozen=True)
class SizeFigures:
    kilobytes: float
    events: int
    ours_mb_s: float
    raw_mb_s: float


def by_event_size(broker: ours.Broker, topic_of: Any, fields: dict[str, Any], volume_mb: float) -> list[SizeFigures]:
    """For each size: our drain of ``volume_mb`` MB of such events vs the raw producer with our settings."""
    figures = []
    for kilobytes in SIZES_KB:
        event = sized_event(fields, kilobytes)
        size = len(event.to_json())
        count = max(100, int(volume_mb * 1e6 / size))
        record = SpoolRecord.from_event(event)
        claimed = ClaimedRecord(0, record.data, record.event_id, record.service_name, record.model,
                                record.event_time_ms, 0, time.time())  # fmt: skip
        raw = baselines.kafka_python_as_our_transport(broker.bootstrap_servers, topic_of(f"raw-{kilobytes}"), claimed,
                                                      count)  # fmt: skip
        drained = ours.drain_rate(broker, topic_of(f"drain-{kilobytes}"), event, count, verify=False)
        figures.append(SizeFigures(kilobytes, count, drained.events_per_s * size / 1e6, raw * size / 1e6))
    return figures


def processes_writing(bootstrap: str, topic: str, processes: int, calls: int) -> float:
    """``processes`` processes, each with its own client on one spool directory, tracking ``calls``
    events each at once (broker up: each one's flusher drains meanwhile); total events/s."""
    with spool_dir(f"writers-{processes}") as directory:
        command = [sys.executable, str(WRITER), "--spool-dir", str(directory), "--brokers", bootstrap,
                   "--topic", topic, "--calls", str(calls)]  # fmt: skip
        children = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError("a writer process did not start")
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            reports = []
            for child in children:
                out, _ = child.communicate(timeout=600)
                if child.returncode != 0:
                    raise RuntimeError(f"a writer process failed with status {child.returncode}")
                reports.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    started = min(report["started"] for report in reports)
    ended = max(report["ended"] for report in reports)
    return rate(processes * calls, ended - started)
