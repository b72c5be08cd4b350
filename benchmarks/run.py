"""Benchmarks of sentinel-durable beside their baselines, measured in one run (issue 6).

    .venv/bin/python benchmarks/run.py           # full counts: several minutes
    .venv/bin/python benchmarks/run.py --quick   # counts / 10: about a minute
    .venv/bin/python benchmarks/run.py --broker apache-kafka   # + the broker rows on Apache Kafka

Starts the embedded broker (Tansu, memory storage), measures the baselines (plain
kafka-python, persist-queue, a naive persist-queue -> Kafka loop, a batched SQLite insert,
fsync) and our figures, and prints one Markdown table: each figure of ours beside its ratio
to the matching baseline and the issue's target. Progress goes to stderr, the table to
stdout. Benchmarks are not tests: nothing here asserts on timings.

``--broker apache-kafka`` then stops Tansu, starts one Apache Kafka broker (KRaft, the tests'
launcher: Java 17+ and Maven) and measures the rows that depend on the broker again on it:
the kafka-python producer baselines and the drains with both transports, in a section of
their own whose ratios are to the baseline measured on that broker.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar
from xml.etree import ElementTree

import bench_baselines as baselines
import bench_delivery as delivery
import bench_ours as ours
import bench_scaling as scaling
import kafka
import persistqueue
from bench_common import (
    EVENT_BYTES,
    Scale,
    make_event,
    make_events,
    new_topic,
    progress,
    spool_dir,
    track_fields,
    unreachable_broker,
    write_backlog,
)
from bench_report import Check, Row, Section, Target, Unit, Value, render

import sentinel_durable as sentinel
from sentinel_durable.errors import ConfigError
from sentinel_durable.spool import ClaimedRecord, SpoolRecord, spool_files
from sentinel_durable.testing import EmbeddedBroker
from sentinel_durable.transports import check_transport_config

T = TypeVar("T")

NOT_IMPLEMENTED = "n/a (transport not implemented)"
BIG_DRAIN = "drain the big backlog (child process)"
APACHE_KAFKA = "apache-kafka"
AK_START = "start Apache Kafka"
#: Where the tests' Apache Kafka launcher is (``apache_kafka/launcher.py``, with its ``pom.xml``).
TESTS = Path(__file__).resolve().parent.parent / "tests"
#: Partitions of the topics created on Apache Kafka: what Tansu and the launcher's brokers give
#: an auto-created topic.
TOPIC_PARTITIONS = 4


class Run:
    """Runs measurements one by one; a failing one becomes an ``error: ...`` cell, not a crash."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def measure(self, label: str, measurement: Callable[[], T]) -> T | None:
        progress(f"{label} ...")
        started = time.perf_counter()
        try:
            result = measurement()
        except Exception as exc:
            progress(f"  {label} failed: {exc!r}")
            self.errors[label] = f"error: {type(exc).__name__}: {exc}"[:80]
            return None
        progress(f"  {label}: {time.perf_counter() - started:.1f}s")
        return result

    def missing(self, label: str, *causes: str) -> str:
        """The error of ``label``, else of the first of ``causes`` that failed (what it needed)."""
        return next((self.errors[name] for name in (label, *causes) if name in self.errors), "not measured")


def machine(apache_kafka: bool = False) -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    except OSError:
        pass
    return "\n".join(
        [
            f"machine: {os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}",
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, kafka-python {kafka.__version__}, "
            f"persist-queue {persistqueue.__version__}, sentinel-durable {sentinel.__version__}",
            f"broker: Tansu (embedded, memory storage) on loopback; event: {EVENT_BYTES}-byte JSON",
            *([f"and: Apache Kafka {apache_kafka_version()}, 1 KRaft node (broker + controller), log on disk, "
               "loopback, started after Tansu stopped: the producer baselines, the drains, track while draining, the "
               "send latency and power mode"] if apache_kafka else []),
            f"code: {source_tree()}",
        ]
    )


def apache_kafka_version() -> str:
    """``kafka.version`` of the launcher's pom.xml: the broker's jars."""
    pom = ElementTree.parse(TESTS / "apache_kafka" / "pom.xml")
    return pom.findtext("{http://maven.apache.org/POM/4.0.0}properties/{http://maven.apache.org/POM/4.0.0}kafka.version",
                        default="?")


def source_tree() -> str:
    """The commit measured, and whether the working tree had changes beside it (read-only git calls)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "sentinel_durable"],
                                 cwd=root, capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"{commit}" + (f" + uncommitted changes in {len(changed)} file(s) of sentinel_durable/" if changed else "")


def transport_unavailable(name: str) -> str | None:
    """Why the transport cannot be used here, or None when it can."""
    try:
        check_transport_config(sentinel.Config(transport=name))  # type: ignore[arg-type]
    except ConfigError as exc:
        return NOT_IMPLEMENTED if "not available in this version" in exc.message else f"n/a ({exc.message})"
    return None


def rate_value(amount: float | None, what: str) -> Value | None:
    return None if amount is None else Value(amount, Unit.PER_SECOND, what)


def ms_value(seconds: float | None) -> Value | None:
    return None if seconds is None else Value(seconds * 1000, Unit.MILLISECONDS)


def mb_value(megabytes: float | None) -> Value | None:
    return None if megabytes is None else Value(megabytes, Unit.MEGABYTES)


def early_note(early_flushes: int) -> str:
    return f"flush() returned True {early_flushes}x before the backlog was delivered" if early_flushes else ""


def drain_note(drain: ours.DrainFigures | None) -> str:
    if drain is None:
        return ""
    notes = [f"{drain.in_topic:,} records read back"] if drain.in_topic is not None else []
    notes += [early_note(drain.early_flushes)] if drain.early_flushes else []
    return "; ".join(notes)


@dataclass(frozen=True)
class BrokerFigures:
    """The rows that depend on the broker, as measured on one broker."""

    kafka: float | None
    kafka_ours: float | None
    drain: ours.DrainFigures | None
    confluent: ours.DrainFigures | None
    confluent_ours: float | None = None
    draining: tuple[float, int] | None = None
    latency: ours.LatencyFigures | None = None
    power_one: float | None = None
    power_threads: float | None = None


def on_apache_kafka(run: Run, scale: Scale, value: bytes, claimed: ClaimedRecord, event: sentinel.TelemetryEvent,
                    with_confluent: bool, fields: dict[str, object]) -> BrokerFigures:
    """The producer baselines and the drains again, on one Apache Kafka broker; it is stopped afterwards.

    Topics are created first (4 partitions, as auto-created ones): on Kafka, auto-creation
    waits for a leader election, which the drain would otherwise time. The JVM is warmed up
    first with one untimed producer round: on a fresh broker the first round ran ~30 % slower.
    """
    sys.path.insert(0, str(TESTS))
    from apache_kafka.launcher import KafkaCluster

    with contextlib.ExitStack() as stack:
        cluster = run.measure(AK_START, lambda: stack.enter_context(KafkaCluster(1)))
        if cluster is None:
            return BrokerFigures(None, None, None, None)
        bootstrap = cluster.bootstrap_servers
        progress(f"Apache Kafka broker on {bootstrap}")

        def topic(tag: str) -> str:
            return cluster.create_topic(new_topic(f"ak-{tag}"), TOPIC_PARTITIONS)

        run.measure("Apache Kafka: warm-up, not in the table",
                    lambda: baselines.kafka_python_producer(bootstrap, topic("warm-up"), value, scale.kafka_records))

        return BrokerFigures(
            kafka=run.measure(
                "Apache Kafka: kafka-python",
                lambda: baselines.kafka_python_producer(bootstrap, topic("kafka"), value, scale.kafka_records),
            ),
            kafka_ours=run.measure(
                "Apache Kafka: kafka-python, our settings",
                lambda: baselines.kafka_python_as_our_transport(bootstrap, topic("kafka-ours"), claimed,
                                                                scale.kafka_records),
            ),
            drain=run.measure(
                "Apache Kafka: drain kafka-python",
                lambda: ours.drain_rate(cluster, topic("drain"), event, scale.drain_backlog),
            ),
            confluent=run.measure(
                "Apache Kafka: drain confluent",
                lambda: ours.drain_rate(cluster, topic("drain-confluent"), event, scale.drain_backlog, "confluent"),
            ) if with_confluent else None,
            confluent_ours=run.measure(
                "Apache Kafka: confluent, our settings",
                lambda: baselines.confluent_as_our_transport(bootstrap, topic("confluent-ours"), claimed,
                                                             scale.kafka_records),
            ) if with_confluent else None,
            draining=run.measure(
                "Apache Kafka: track while draining",
                lambda: ours.track_while_draining(bootstrap, topic("track-draining"), dict(fields), event,
                                                  scale.latency_backlog, scale.track_calls),
            ),
            latency=run.measure(
                "Apache Kafka: send latency while draining",
                lambda: ours.send_latency_while_draining(bootstrap, topic("latency"), dict(fields), event,
                                                         scale.latency_backlog, scale.latency_sends),
            ),
            power_one=run.measure(
                "Apache Kafka: track power",
                lambda: ours.track_rate(bootstrap, topic("track-power"), dict(fields), "power", scale.track_calls),
            ),
            power_threads=run.measure(
                "Apache Kafka: track power threads",
                lambda: ours.threaded_track_rate(bootstrap, topic("track-power-threads"), dict(fields), "power",
                                                 scale.power_threads, scale.power_calls_per_thread),
            ),
        )


def apache_kafka_section(run: Run, scale: Scale, figures: BrokerFigures, tansu: BrokerFigures,
                         confluent_unavailable: str | None, idle: Value | None) -> Section:
    """The rows of ``figures`` with ratios to kafka-python on Apache Kafka; the Tansu figure in the note."""

    def missing(label: str) -> str:
        return run.missing(f"Apache Kafka: {label}", AK_START)

    def beside(value: Value | None, note: str = "") -> str:
        return "; ".join(part for part in (f"Tansu: {value}" if value else "", note) if part)

    kafka_value = rate_value(figures.kafka, "records")
    kafka_ours = rate_value(figures.kafka_ours, "records")
    confluent_ours = rate_value(figures.confluent_ours, "records")
    drain, confluent, latency = figures.drain, figures.confluent, figures.latency
    tansu_drain = rate_value(tansu.drain.events_per_s if tansu.drain else None, "events")
    tansu_confluent = rate_value(tansu.confluent.events_per_s if tansu.confluent else None, "events")
    return Section(
        f"On Apache Kafka {apache_kafka_version()} (1 broker)",
        [
            Row("kafka-python KafkaProducer, acks=all, send N then flush, Apache Kafka", kafka_value,
                missing=missing("kafka-python"),
                note=beside(rate_value(tansu.kafka, "records"), f"N={scale.kafka_records:,}")),
            Row("raw KafkaProducer with our transport's settings, Apache Kafka", kafka_ours, "kafka-python",
                kafka_value, missing=missing("kafka-python, our settings"),
                note=beside(rate_value(tansu.kafka_ours, "records"))),
            Row("raw confluent Producer with our transport's settings, Apache Kafka", confluent_ours, "kafka-python",
                kafka_value, missing=confluent_unavailable or missing("confluent, our settings"),
                note=beside(rate_value(tansu.confluent_ours, "records"))),
            Row(f"drain {scale.drain_backlog:,} backlog, kafka-python, Apache Kafka",
                rate_value(drain.events_per_s if drain else None, "events"), "raw KafkaProducer, our settings",
                kafka_ours, Target(Check.RATIO_AT_LEAST, 0.95), missing("drain kafka-python"),
                note=beside(tansu_drain, drain_note(drain))),
            Row(f"drain {scale.drain_backlog:,} backlog, confluent-kafka, Apache Kafka",
                rate_value(confluent.events_per_s if confluent else None, "events"),
                "raw confluent Producer, our settings", confluent_ours, Target(Check.RATIO_AT_LEAST, 0.8),
                confluent_unavailable or missing("drain confluent"), note=beside(tansu_confluent, drain_note(confluent))),
            Row("track while the flusher drains, Apache Kafka",
                rate_value(figures.draining[0] if figures.draining else None, "calls"), "track, flusher idle",
                idle, Target(Check.RATIO_AT_LEAST, 0.8), missing("track while draining"),
                note=beside(rate_value(tansu.draining[0] if tansu.draining else None, "calls"))),
            Row("send latency p99 while draining, Apache Kafka", ms_value(latency.p99_ms / 1000 if latency else None),
                target=Target(Check.VALUE_AT_MOST, 2), missing=missing("send latency while draining"),
                note=beside(ms_value(tansu.latency.p99_ms / 1000 if tansu.latency else None))),
            Row("send latency max while draining, Apache Kafka", ms_value(latency.max_ms / 1000 if latency else None),
                target=Target(Check.VALUE_AT_MOST, 10), missing=missing("send latency while draining"),
                note=beside(ms_value(tansu.latency.max_ms / 1000 if tansu.latency else None))),
            Row(f"track, power mode, {scale.power_threads} threads (total), Apache Kafka",
                rate_value(figures.power_threads, "calls"), "power mode, 1 thread",
                rate_value(figures.power_one, "calls"), Target(Check.RATIO_AT_LEAST, 2),
                missing("track power threads"), note=beside(rate_value(tansu.power_threads, "calls"))),
        ],
    )


def delivery_section(run: Run, scale: Scale, idle: delivery.Figures | None, thread: delivery.Figures | None,
                     process: delivery.Figures | None, confluent: delivery.Figures | None) -> Section:
    """The experiment's rows: the targets of track while draining, with the drain in a process of its own
    (kafka-python), in the flusher thread with kafka-python, and in the flusher thread with confluent-kafka."""
    idle_value = rate_value(idle.calls_per_s if idle else None, "calls")
    rows = []
    for name, figures, missing in (("the flusher thread", thread, "delivery: flusher thread"),
                                   ("a delivery process", process, "delivery: delivery process"),
                                   ("the flusher thread (confluent)", confluent, "delivery: flusher thread, confluent")):
        gone = run.missing(missing, "delivery: track idle")
        rows += [
            Row(f"track while {name} drains", rate_value(figures.calls_per_s if figures else None, "calls"),
                "track, flusher idle", idle_value, Target(Check.RATIO_AT_LEAST, 0.8), gone,
                note=f"drain meanwhile {figures.drained_per_s:,.0f} events/s" if figures and figures.drained_per_s
                else ""),
            Row(f"track latency p99 while {name} drains", ms_value(figures.p99_ms / 1000 if figures else None),
                "idle", ms_value(idle.p99_ms / 1000 if idle else None), Target(Check.VALUE_AT_MOST, 2), gone),
            Row(f"track latency max while {name} drains", ms_value(figures.max_ms / 1000 if figures else None),
                "idle", ms_value(idle.max_ms / 1000 if idle else None), Target(Check.VALUE_AT_MOST, 10), gone,
                note="idle: the WAL checkpoint inside a commit"),
        ]  # fmt: skip
    return Section(
        f"Delivery process (experiment, bench_delivery.py): {scale.latency_sends:,} track calls during a "
        f"{scale.latency_backlog:,} drain by the flusher thread or by a process of its own", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description="sentinel-durable benchmarks beside their baselines (issue 6)")
    parser.add_argument("--quick", action="store_true", help="counts divided by 10: about a minute in all")
    parser.add_argument(
        "--broker", choices=("tansu", APACHE_KAFKA), default="tansu",
        help="tansu: everything on the embedded Tansu broker (the default); apache-kafka: that, and then the "
             "producer baselines and the drains again on one Apache Kafka broker (needs Java 17+ and Maven)",
    )  # fmt: skip
    args = parser.parse_args()
    apache_kafka = args.broker == APACHE_KAFKA
    scale = Scale().quick() if args.quick else Scale()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # "Metadata refresh failed: Cancelled" on close
    begun = time.perf_counter()
    header = machine(apache_kafka)
    progress(header.replace("\n", "; "))

    fields = track_fields()
    event = make_event(fields)
    value = event.to_json()
    record = SpoolRecord.from_event(event)
    claimed = ClaimedRecord(0, record.data, record.event_id, record.service_name, record.model,
                            record.event_time_ms, 0, time.time())
    run = Run()

    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        progress(f"broker on {bootstrap}")

        # -- baselines --------------------------------------------------------------------------
        kafka_rate = run.measure(
            "kafka-python",
            lambda: baselines.kafka_python_producer(bootstrap, new_topic("kafka"), value, scale.kafka_records),
        )
        kafka_ours_rate = run.measure(
            "kafka-python, our settings",
            lambda: baselines.kafka_python_as_our_transport(bootstrap, new_topic("kafka-ours"), claimed,
                                                            scale.kafka_records),
        )
        pq = run.measure("persist-queue", lambda: baselines.persist_queue(value, scale.pq_items))
        naive_rate = run.measure(
            "naive loop", lambda: baselines.naive_durable_loop(bootstrap, new_topic("naive"), value, scale.naive_events)
        )
        confluent_ours_rate = None
        if transport_unavailable("confluent") is None:
            confluent_ours_rate = run.measure(
                "confluent, our settings",
                lambda: baselines.confluent_as_our_transport(bootstrap, new_topic("confluent-ours"), claimed,
                                                             scale.kafka_records),
            )
        sqlite_rate = run.measure("sqlite batch", lambda: baselines.sqlite_batched_insert(value, scale.sqlite_rows))
        sqlite_commits = run.measure(
            "sqlite one-row commits", lambda: baselines.sqlite_one_row_commits(record.data, scale.track_calls)
        )
        sqlite_batches = run.measure(
            "sqlite executemany batches",
            lambda: baselines.sqlite_executemany_batches(record.data, scale.batch_events, scale.batch_size),
        )
        fsync_rate = run.measure("fsync", lambda: baselines.fsync_rate(scale.fsyncs))
        pq_open = run.measure("persist-queue open", lambda: baselines.persist_queue_open_seconds(scale.constructions))

        # -- ours ---------------------------------------------------------------------------------
        track: dict[str, float | None] = {}
        for mode in ("process", "power", "async"):
            track[mode] = run.measure(
                f"track {mode}",
                partial(ours.track_rate, bootstrap, new_topic(f"track-{mode}"), fields, mode, scale.track_calls),
            )
        # Diagnostics: the same calls with no broker listening (the flusher stays in backoff),
        # so the caller's path and the spool are measured without the drain competing.
        nowhere = unreachable_broker()
        track_alone = run.measure(
            "track process, no broker",
            partial(ours.track_rate, nowhere, "bench.alone", fields, "process", scale.track_calls, warm_up=False),
        )
        power_threads = run.measure(
            "track power threads",
            lambda: ours.threaded_track_rate(bootstrap, new_topic("track-power-threads"), fields, "power",
                                             scale.power_threads, scale.power_calls_per_thread),
        )
        # Diagnostics of the power target: the same, with the flusher idle (its deletes commit too).
        power_alone = run.measure(
            "track power, no broker",
            partial(ours.track_rate, nowhere, "bench.alone", fields, "power", scale.track_calls // 4, warm_up=False),
        )
        power_threads_alone = run.measure(
            "track power threads, no broker",
            lambda: ours.threaded_track_rate(nowhere, "bench.alone", fields, "power", scale.power_threads,
                                             scale.power_calls_per_thread, warm_up=False),
        )
        batch_events = make_events(fields, scale.batch_events)
        batch_rate = run.measure(
            "send_batch",
            lambda: ours.send_batch_rate(bootstrap, new_topic("batch"), batch_events, scale.batch_size),
        )
        batch_alone = run.measure(
            "send_batch, no broker",
            lambda: ours.send_batch_rate(nowhere, "bench.alone", batch_events, scale.batch_size, warm_up=False),
        )
        drain = run.measure(
            "drain kafka-python",
            lambda: ours.drain_rate(broker, new_topic("drain"), event, scale.drain_backlog),
        )
        confluent_unavailable = transport_unavailable("confluent")
        confluent = None
        if confluent_unavailable is None:
            confluent = run.measure(
                "drain confluent",
                lambda: ours.drain_rate(broker, new_topic("drain-confluent"), event, scale.drain_backlog, "confluent"),
            )
        latency = run.measure(
            "send latency while draining",
            lambda: ours.send_latency_while_draining(bootstrap, new_topic("latency"), fields, event,
                                                     scale.latency_backlog, scale.latency_sends),
        )
        draining = run.measure(
            "track while draining",
            lambda: ours.track_while_draining(bootstrap, new_topic("track-draining"), fields, event,
                                              scale.latency_backlog, scale.track_calls),
        )
        construct = run.measure("construction, no broker", lambda: ours.construction_seconds(scale.constructions))
        # The delivery-process experiment (bench_delivery.py): track with the drain in the flusher
        # thread against the same drain in a process of its own, and track idle, back to back.
        experiment = (scale.latency_backlog, scale.latency_sends)
        by_idle = run.measure("delivery: track idle", lambda: delivery.idle(fields, experiment[1]))
        by_thread = run.measure("delivery: flusher thread",
                                lambda: delivery.flusher_thread(bootstrap, fields, *experiment))
        by_process = run.measure("delivery: delivery process",
                                 lambda: delivery.delivery_process(bootstrap, fields, *experiment))
        by_confluent = (run.measure("delivery: flusher thread, confluent",
                                    lambda: delivery.flusher_thread(bootstrap, fields, *experiment, "confluent"))
                        if transport_unavailable("confluent") is None else None)  # fmt: skip

        with spool_dir("big") as big_dir:
            run.measure(f"write a {scale.big_backlog:,}-event backlog",
                        lambda: write_backlog(big_dir, event, scale.big_backlog))
            files = spool_files(big_dir)
            pq_open_big = (
                run.measure("persist-queue open on the backlog",
                            lambda: baselines.persist_queue_open_existing_seconds(files[0]))
                if files
                else None
            )
            big = run.measure(
                BIG_DRAIN,
                lambda: ours.big_drain(bootstrap, new_topic("big"), big_dir, scale.big_backlog, EVENT_BYTES),
            )

        # -- scaling (issue 15) ---------------------------------------------------------------------
        sizes = run.measure(
            "event sizes", lambda: scaling.by_event_size(broker, new_topic, fields, scale.size_volume_mb)
        )
        drain_small = run.measure(
            "drain small backlog",
            lambda: ours.drain_rate(broker, new_topic("drain-small"), event, scale.small_backlog),
        )
        writers: dict[int, float | None] = {}
        for processes in (1, 4, 16):
            writers[processes] = run.measure(
                f"{processes} processes writing",
                partial(scaling.processes_writing, bootstrap, new_topic(f"writers-{processes}"), processes,
                        scale.writer_calls),
            )

    apache_kafka_figures = (
        on_apache_kafka(run, scale, value, claimed, event, confluent_unavailable is None, fields)
        if apache_kafka else None
    )

    big_missing = run.missing(BIG_DRAIN)
    big_n = f"{scale.big_backlog // 1000:,}k" if scale.big_backlog < 1_000_000 else f"{scale.big_backlog // 1_000_000}M"
    kafka_value = rate_value(kafka_rate, "records")
    pq_put = rate_value(pq.puts_per_s if pq else None, "puts")
    fsync_value = rate_value(fsync_rate, "fsyncs")
    kafka_ours_value = rate_value(kafka_ours_rate, "records")
    confluent_ours_value = rate_value(confluent_ours_rate, "records")
    idle_value = rate_value(track_alone, "calls")
    power_one = rate_value(track["power"], "calls")
    targets = Section(
        "Targets (issue 15): each against the baseline a user would pick instead, measured in this run",
        [
            Row(f"drain {scale.drain_backlog:,} backlog, kafka-python transport",
                rate_value(drain.events_per_s if drain else None, "events"), "raw KafkaProducer, our settings",
                kafka_ours_value, Target(Check.RATIO_AT_LEAST, 0.95), run.missing("drain kafka-python"),
                note="same key, 6 headers, snappy, 1 MiB batches, acks=all"),
            Row(f"drain {scale.drain_backlog:,} backlog, confluent transport",
                rate_value(confluent.events_per_s if confluent else None, "events"), "raw confluent Producer, our settings",
                confluent_ours_value, Target(Check.RATIO_AT_LEAST, 0.8),
                confluent_unavailable or run.missing("drain confluent", "confluent, our settings")),
            Row("track, process mode, 1 thread, flusher idle", idle_value, "sqlite3 one-row WAL commits",
                rate_value(sqlite_commits, "commits"), Target(Check.RATIO_AT_LEAST, 0.5),
                run.missing("track process, no broker"), note=f"synchronous=NORMAL, {len(record.data)}-byte rows"),
            Row(f"send_batch of {scale.batch_size:,}, flusher idle", rate_value(batch_alone, "events"),
                f"sqlite3 executemany of {scale.batch_size:,} a transaction", rate_value(sqlite_batches, "rows"),
                Target(Check.RATIO_AT_LEAST, 0.4), run.missing("send_batch, no broker")),
            Row("track while the flusher drains", rate_value(draining[0] if draining else None, "calls"),
                "track, flusher idle", idle_value, Target(Check.RATIO_AT_LEAST, 0.8),
                run.missing("track while draining"),
                note=f"{draining[1]:,} of the {scale.latency_backlog:,} backlog still pending at the end" if draining
                else ""),
            Row("send latency p99 while draining", ms_value(latency.p99_ms / 1000 if latency else None),
                target=Target(Check.VALUE_AT_MOST, 2), missing=run.missing("send latency while draining"),
                note=f"p50 {latency.p50_ms:.3f} ms" if latency else ""),
            Row("send latency max while draining", ms_value(latency.max_ms / 1000 if latency else None),
                target=Target(Check.VALUE_AT_MOST, 10), missing=run.missing("send latency while draining"),
                note=f"{scale.latency_sends:,} sends during a {scale.latency_backlog:,} drain"),
            Row(f"track, power mode, {scale.power_threads} threads (total)", rate_value(power_threads, "calls"),
                "power mode, 1 thread", power_one, Target(Check.RATIO_AT_LEAST, 2), run.missing("track power threads"),
                note="group commit; broker up in both"),
            Row(f"track, power mode, {scale.power_threads} threads (total), no broker",
                rate_value(power_threads_alone, "calls"), "power mode, 1 thread, no broker",
                rate_value(power_alone, "calls"), missing=run.missing("track power threads, no broker"),
                note="diagnostic: the flusher idle"),
        ],
    )
    sections = [
        targets,
        Section(
            "Baselines",
            [
                Row("kafka-python KafkaProducer, acks=all, send N then flush", kafka_value,
                    missing=run.missing("kafka-python"), note=f"N={scale.kafka_records:,}"),
                Row("kafka-python with our transport's settings (no spool)", rate_value(kafka_ours_rate, "records"),
                    "kafka-python", kafka_value, missing=run.missing("kafka-python, our settings"),
                    note="snappy, 1 MiB batches, key + 6 headers; diagnostic"),
                Row("persist-queue SQLiteAckQueue.put, per call", pq_put, missing=run.missing("persist-queue"),
                    note=f"p50 {pq.put_p50_ms:.3f} ms, p99 {pq.put_p99_ms:.3f} ms" if pq else ""),
                Row("persist-queue get + ack, per item", rate_value(pq.get_acks_per_s if pq else None, "items"),
                    missing=run.missing("persist-queue")),
                Row("naive loop: pq get, produce, wait, ack", rate_value(naive_rate, "events"),
                    missing=run.missing("naive loop"), note=f"N={scale.naive_events:,}"),
                Row("raw confluent-kafka Producer with our transport's settings", confluent_ours_value,
                    "kafka-python", kafka_value, missing=confluent_unavailable or run.missing("confluent, our settings"),
                    note="key + 6 headers, snappy; message.timeout.ms raised for one queue of N"),
                Row("SQLite one-row commits, WAL, synchronous=NORMAL", rate_value(sqlite_commits, "commits"),
                    missing=run.missing("sqlite one-row commits"), note=f"N={scale.track_calls:,}"),
                Row(f"SQLite executemany of {scale.batch_size:,} rows a transaction, WAL, NORMAL",
                    rate_value(sqlite_batches, "rows"), missing=run.missing("sqlite executemany batches")),
                Row("SQLite executemany, one transaction, WAL", rate_value(sqlite_rate, "rows"),
                    missing=run.missing("sqlite batch"), note=f"{scale.sqlite_rows:,} rows in one transaction"),
                Row("fsync: 100-byte write + fsync, small file", fsync_value, missing=run.missing("fsync")),
                Row("SQLiteAckQueue() in an empty directory", ms_value(pq_open),
                    missing=run.missing("persist-queue open"), note="median"),
                Row(f"SQLiteAckQueue() on the {big_n} backlog file", ms_value(pq_open_big),
                    missing=run.missing("persist-queue open on the backlog")),
            ],
        ),
        Section(
            "Ours",
            [
                Row("track, process mode, 1 thread", rate_value(track["process"], "calls"), "pq put", pq_put,
                    missing=run.missing("track process"),
                    note="broker up: the flusher drains meanwhile"),
                Row("track, power mode, 1 thread", rate_value(track["power"], "calls"), "pq put", pq_put,
                    missing=run.missing("track power")),
                Row("track, async mode, 1 thread", rate_value(track["async"], "calls"), "pq put", pq_put,
                    missing=run.missing("track async")),
                Row("track, process mode, 1 thread, no broker", rate_value(track_alone, "calls"), "pq put", pq_put,
                    missing=run.missing("track process, no broker"), note="diagnostic: flusher idle, spool alone"),
                Row(f"track, power mode, {scale.power_threads} threads (total)", rate_value(power_threads, "calls"),
                    "fsync", fsync_value, missing=run.missing("track power threads")),
                Row(f"send_batch of {scale.batch_size:,} events", rate_value(batch_rate, "events"), "pq put", pq_put,
                    missing=run.missing("send_batch"), note="broker up: the flusher drains meanwhile"),
                Row(f"send_batch of {scale.batch_size:,} events, no broker", rate_value(batch_alone, "events"),
                    "pq put", pq_put, missing=run.missing("send_batch, no broker"),
                    note="diagnostic: flusher idle, spool alone"),
                Row(f"drain {scale.drain_backlog:,} backlog, kafka-python", rate_value(drain.events_per_s if drain
                    else None, "events"), "kafka-python", kafka_value, missing=run.missing("drain kafka-python"),
                    note=drain_note(drain)),
                Row(f"drain {scale.drain_backlog:,} backlog, confluent-kafka", rate_value(confluent.events_per_s
                    if confluent else None, "events"), "kafka-python", kafka_value,
                    missing=confluent_unavailable or run.missing("drain confluent")),
                Row("send latency p50 while draining", ms_value(latency.p50_ms / 1000 if latency else None),
                    "pq put p50", ms_value(pq.put_p50_ms / 1000 if pq else None),
                    missing=run.missing("send latency while draining"),
                    note=f"{scale.latency_sends:,} sends during a {scale.latency_backlog:,} drain"),
                Row("send latency p99 while draining", ms_value(latency.p99_ms / 1000 if latency else None),
                    "pq put p99", ms_value(pq.put_p99_ms / 1000 if pq else None),
                    missing=run.missing("send latency while draining"),
                    note=(f"max {latency.max_ms:.1f} ms; {latency.backlog_left:,} still pending after the last send"
                          if latency else "")),
                Row("Client() with no broker", ms_value(construct), "pq open", ms_value(pq_open),
                    Target(Check.VALUE_AT_MOST, 50), run.missing("construction, no broker"), note="median, ms"),
                Row(f"Client() with a {big_n} backlog on disk", ms_value(big.construct_s if big else None),
                    "pq open on it", ms_value(pq_open_big), Target(Check.VALUE_AT_MOST, 50),
                    big_missing, note="fresh process, ms"),
                Row(f"drain {big_n} backlog, kafka-python", rate_value(big.drain_events_per_s if big else None,
                    "events"), "kafka-python", kafka_value, missing=big_missing,
                    note=early_note(big.early_flushes) if big else ""),
                Row(f"peak RSS draining {big_n}", mb_value(big.peak_rss_mb if big else None), "RSS after Client()",
                    mb_value(big.rss_after_construct_mb if big else None), Target(Check.VALUE_BELOW, 150),
                    big_missing, note="VmHWM of the child, MB"),
                Row("RSS growth over the drain", Value(big.rss_growth, Unit.FACTOR) if big else None,
                    target=Target(Check.VALUE_AT_MOST, 1.10), missing=big_missing,
                    note="max RSS last quarter / first quarter (flat: <= 1.10)"),
                Row("spool files, peak while draining", mb_value(big.spool_peak_mb if big else None),
                    "raw event bytes", mb_value(big.raw_event_mb if big else None),
                    missing=big_missing,
                    note=f"{big.spool_before_mb:,.0f} MB before the drain" if big else ""),
                Row("spool files after the drain", mb_value(big.spool_after_mb if big else None), "peak",
                    mb_value(big.spool_peak_mb if big else None), Target(Check.RATIO_BELOW, 0.05),
                    big_missing, note="client still open"),
            ],
        ),
    ]
    size_rows = [
        Row(f"drain of {figure.events:,} events of {figure.kilobytes:g} KB",
            Value(figure.ours_mb_s, Unit.PER_SECOND, "MB"),
            "raw KafkaProducer, our settings", Value(figure.raw_mb_s, Unit.PER_SECOND, "MB"),
            note="MB/s of record values, the same events each way")
        for figure in sizes or []
    ] or [Row("drain by event size", None, missing=run.missing("event sizes"))]
    drain_100k = rate_value(drain.events_per_s if drain else None, "events")
    backlog_rows = [
        Row(f"drain {scale.small_backlog:,} backlog, kafka-python", rate_value(drain_small.events_per_s if drain_small
            else None, "events"), f"drain {scale.drain_backlog:,}", drain_100k, missing=run.missing("drain small backlog")),
        Row(f"drain {scale.drain_backlog:,} backlog, kafka-python", drain_100k, f"drain {scale.drain_backlog:,}",
            drain_100k, missing=run.missing("drain kafka-python")),
        Row(f"drain {big_n} backlog, kafka-python", rate_value(big.drain_events_per_s if big else None, "events"),
            f"drain {scale.drain_backlog:,}", drain_100k, missing=big_missing, note="child process; flat: ratio ~1"),
    ]
    one_writer = rate_value(writers.get(1), "events")
    writer_rows = [
        Row(f"{processes} process{'es' if processes > 1 else ''} tracking into one spool directory (total)",
            rate_value(writers.get(processes), "events"), "1 process", one_writer,
            missing=run.missing(f"{processes} processes writing"),
            note=f"{scale.writer_calls:,} calls each, broker up; each process its own file")
        for processes in (1, 4, 16)
    ]
    sections.append(Section("Scaling (issue 15): event size, backlog, processes", size_rows + backlog_rows + writer_rows))
    sections.append(delivery_section(run, scale, by_idle, by_thread, by_process, by_confluent))
    if apache_kafka_figures is not None:
        tansu = BrokerFigures(kafka_rate, kafka_ours_rate, drain, confluent, confluent_ours_rate, draining, latency,
                              track["power"], power_threads)
        sections.append(apache_kafka_section(run, scale, apache_kafka_figures, tansu, confluent_unavailable, idle_value))
    elapsed = time.perf_counter() - begun
    print(header)
    print(f"mode: {'quick (counts / 10)' if args.quick else 'full'}; took {elapsed:.0f}s\n")
    print(render(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
