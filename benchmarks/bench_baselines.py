"""The baselines, measured in the same run as our figures: what the libraries and the disk do alone."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import persistqueue
from bench_common import median, percentile, rate, spool_dir
from kafka import KafkaProducer

from sentinel_durable import Config
from sentinel_durable.transports.kafka_python import producer_options
from sentinel_durable.spool import ClaimedRecord
from sentinel_durable.transports import record_headers, record_key


@dataclass(frozen=True)
class PersistQueueFigures:
    puts_per_s: float
    put_p50_ms: float
    put_p99_ms: float
    get_acks_per_s: float


def kafka_python_producer(bootstrap: str, topic: str, value: bytes, count: int) -> float:
    """Plain ``KafkaProducer(acks="all")``: send ``count`` records, then flush; records/s."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, value=value).get(timeout=30)  # metadata and topic creation, not timed
        started = time.perf_counter()
        for _ in range(count):
            producer.send(topic, value=value)
        producer.flush(timeout=600)
        return rate(count, time.perf_counter() - started)
    finally:
        producer.close(timeout=5)


def kafka_python_as_our_transport(bootstrap: str, topic: str, record: ClaimedRecord, count: int) -> float:
    """kafka-python with our transport's producer settings, key and headers, but no spool; records/s.

    Not a baseline the issue names: it separates what the spool costs from what the producer
    settings (compression, batch size, headers) cost.
    """
    config = Config(brokers=[bootstrap], topic=topic)
    producer = KafkaProducer(**producer_options(config))
    key, headers = record_key(config, record), record_headers(record)
    try:
        producer.send(topic, value=record.data, key=key, headers=headers).get(timeout=30)
        started = time.perf_counter()
        for _ in range(count):
            producer.send(topic, value=record.data, key=key, headers=headers, timestamp_ms=record.event_time_ms)
        producer.flush(timeout=600)
        return rate(count, time.perf_counter() - started)
    finally:
        producer.close(timeout=5)


def confluent_as_our_transport(bootstrap: str, topic: str, record: ClaimedRecord, count: int) -> float:
    """A raw confluent-kafka ``Producer`` with our transport's settings, key and headers, no spool:
    produce ``count`` records, then flush; records/s (the baseline of the confluent drain)."""
    from confluent_kafka import Producer

    from sentinel_durable.transports.confluent import producer_settings

    config = Config(brokers=[bootstrap], topic=topic, transport="confluent")
    # Our settings, but for message.timeout.ms: N records queued at once wait longer than one write_timeout
    # in librdkafka's queue (our transport queues a batch at a time); the timeout does not change the rate.
    producer = Producer(producer_settings(config) | {"message.timeout.ms": 600_000})
    key, headers = record_key(config, record), record_headers(record)
    failed: list[object] = []

    def acked(error: object, message: object) -> None:
        if error is not None:
            failed.append(error)

    producer.produce(topic, value=record.data, key=key, headers=headers, on_delivery=acked)
    producer.flush(30)  # metadata and topic creation, not timed
    started = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value=record.data, key=key, headers=headers,
                                 timestamp=record.event_time_ms, on_delivery=acked)  # fmt: skip
                break
            except BufferError:  # the local queue is full: serve callbacks, as our transport does
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(600) != 0 or failed:
        raise RuntimeError(f"the raw confluent producer did not deliver everything ({len(failed)} failed)")
    return rate(count, time.perf_counter() - started)


@contextlib.contextmanager
def _bare_sqlite(tag: str) -> Iterator[sqlite3.Connection]:
    """A fresh SQLite file in autocommit mode, WAL at ``synchronous=NORMAL`` (our ``process`` mode's
    settings), with a table of (id, data, ts): what the bare baselines write into."""
    with spool_dir(tag) as directory:
        connection = sqlite3.connect(directory / f"{tag}.db", isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY, data BLOB, ts INTEGER)")
            yield connection
        finally:
            connection.close()


def sqlite_one_row_commits(value: bytes, count: int) -> float:
    """Bare ``sqlite3``: one row of ``value`` per WAL commit; commits/s. The physical limit of
    per-call ``track`` in ``process`` mode."""
    with _bare_sqlite("sqlite-commits") as connection:
        now = int(time.time() * 1000)
        started = time.perf_counter()
        for _ in range(count):
            connection.execute("INSERT INTO queue (data, ts) VALUES (?, ?)", (value, now))  # autocommit
        return rate(count, time.perf_counter() - started)


def sqlite_executemany_batches(value: bytes, count: int, batch: int) -> float:
    """Bare ``sqlite3``: ``executemany`` of ``batch`` rows a transaction, ``count`` rows in all; rows/s
    (the limit of ``send_batch`` of ``batch`` events)."""
    with _bare_sqlite("sqlite-batches") as connection:
        rows = [(value, int(time.time() * 1000))] * batch
        started = time.perf_counter()
        for _ in range(count // batch):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO queue (data, ts) VALUES (?, ?)", rows)
            connection.execute("COMMIT")
        return rate(count // batch * batch, time.perf_counter() - started)


def persist_queue(value: bytes, count: int) -> PersistQueueFigures:
    """``persistqueue.SQLiteAckQueue``: ``put`` per call, then ``get`` + ``ack`` per item."""
    with spool_dir("pq") as directory:
        queue = persistqueue.SQLiteAckQueue(str(directory))
        try:
            latencies: list[float] = []
            started = time.perf_counter()
            for _ in range(count):
                call = time.perf_counter()
                queue.put(value)
                latencies.append(time.perf_counter() - call)
            put_seconds = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(count):
                item = queue.get(block=False)
                queue.ack(item)
            get_seconds = time.perf_counter() - started
        finally:
            queue.close()
    latencies.sort()
    return PersistQueueFigures(
        puts_per_s=rate(count, put_seconds),
        put_p50_ms=percentile(latencies, 0.50) * 1000,
        put_p99_ms=percentile(latencies, 0.99) * 1000,
        get_acks_per_s=rate(count, get_seconds),
    )


def naive_durable_loop(bootstrap: str, topic: str, value: bytes, count: int) -> float:
    """The naive durable design: persist-queue get, produce, wait for the ack, ack — per event; events/s."""
    with spool_dir("naive") as directory:
        queue = persistqueue.SQLiteAckQueue(str(directory))
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            for _ in range(count):
                queue.put(value)
            producer.send(topic, value=value).get(timeout=30)  # metadata, not timed
            started = time.perf_counter()
            for _ in range(count):
                item = queue.get(block=False)
                producer.send(topic, value=item).get(timeout=30)
                queue.ack(item)
            return rate(count, time.perf_counter() - started)
        finally:
            producer.close(timeout=5)
            queue.close()


def sqlite_batched_insert(value: bytes, count: int) -> float:
    """``executemany`` of ``count`` rows in one transaction, WAL journal; rows/s."""
    with spool_dir("sqlite") as directory:
        connection = sqlite3.connect(directory / "batch.db", isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(
                "CREATE TABLE queue (_id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, timestamp FLOAT, status INTEGER)"
            )
            now = time.time()
            rows = [(value, now, 1)] * count
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO queue (data, timestamp, status) VALUES (?, ?, ?)", rows)
            connection.execute("COMMIT")
            return rate(count, time.perf_counter() - started)
        finally:
            connection.close()


def fsync_rate(count: int) -> float:
    """Write 100 bytes at the start of a small file and fsync it, ``count`` times; fsyncs/s."""
    with spool_dir("fsync") as directory:
        descriptor = os.open(directory / "small", os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            payload = b"x" * 100
            started = time.perf_counter()
            for _ in range(count):
                os.pwrite(descriptor, payload, 0)
                os.fsync(descriptor)
            return rate(count, time.perf_counter() - started)
        finally:
            os.close(descriptor)


def persist_queue_open_seconds(repeats: int) -> float:
    """Median time to create a ``SQLiteAckQueue`` in an empty directory."""
    timings = []
    for _ in range(repeats):
        with spool_dir("pq-open") as directory:
            started = time.perf_counter()
            queue = persistqueue.SQLiteAckQueue(str(directory))
            timings.append(time.perf_counter() - started)
            queue.close()
    return median(timings)


def persist_queue_open_existing_seconds(db_file: Path) -> float:
    """Time to open a ``SQLiteAckQueue`` on an existing spool file (persist-queue's layout)."""
    started = time.perf_counter()
    queue = persistqueue.SQLiteAckQueue(str(db_file.parent), db_file_name=db_file.name)
    seconds = time.perf_counter() - started
    queue.close()
    return seconds
