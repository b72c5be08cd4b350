"""The backlog left by dead processes is in ``stats()`` from the first call, read without waiting:
the first ``stats()`` neither adopts nor waits for a file another tool holds locked, and a file
is counted once, before and after the flusher adopts it."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from spool_helpers import records
from test_client import free_port

import sentinel_durable as sentinel
from sentinel_durable.spool import Spool, owner_alive, spool_files
from sentinel_durable.testing import EmbeddedBroker, wait_until


@pytest.fixture(autouse=True)
def _no_topic_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_TOPIC", raising=False)


def leave_orphan(directory: Path, topic: str | None, count: int) -> Path:
    """A spool file of ``topic`` holding ``count`` pending events, left by a process that is gone."""
    before = set(spool_files(directory))
    spool = Spool(directory, topic=topic)
    spool.put_many(records(count))
    spool._owned.active.close()
    spool._closed = True
    (path,) = set(spool_files(directory)) - before
    return path


def offline_client(directory: Path, **options: object) -> sentinel.Client:
    return sentinel.Client(brokers=[f"127.0.0.1:{free_port()}"], topic="orders", spool_dir=directory, **options)


def test_first_stats_counts_an_orphan_another_tool_holds_locked_without_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orphan = leave_orphan(tmp_path, "orders", 7)
    holder = sqlite3.connect(orphan, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another tool writes to it: a writer of this file waits
    try:
        with (
            caplog.at_level(logging.INFO, logger="sentinel_durable.spool"),
            offline_client(tmp_path, write_timeout=3.0) as client,
        ):
            # The flusher's first pass has locked the orphan and waits on the tool's lock.
            wait_until(lambda: owner_alive(orphan), 10, 0.005, description="the adoption pass on the orphan")
            started = time.monotonic()
            first = client.stats()
            elapsed = time.monotonic() - started
            assert first.spooled == 7
            assert elapsed < 3.0, f"the first stats() waited {elapsed:.2f}s for a locked file"
            # The pass gives up on it for now: still our backlog, counted once.
            wait_until(lambda: "will try again" in caplog.text, 10, description="the pass to leave the orphan")
            assert client.stats().spooled == 7
            holder.execute("ROLLBACK")
            client.flush(timeout=0.1)  # adopts what it can, then times out: no broker
            stats = client.stats()
            assert (stats.spooled, stats.spool_files) == (7, 2)  # adopted now, and still counted once
    finally:
        holder.close()


def test_first_stats_counts_the_orphans_this_client_adopts_and_only_those(tmp_path: Path) -> None:
    leave_orphan(tmp_path, "orders", 3)
    leave_orphan(tmp_path, "payments", 4)  # another topic: never this client's backlog
    leave_orphan(tmp_path, None, 5)  # no recorded topic: this client adopts it
    with offline_client(tmp_path) as client:
        first = client.stats()
        assert (first.spooled, first.in_flight, first.spool_files) == (8, 0, 3)
        client.flush(timeout=0.1)  # the adoption pass is done once this returns
        stats = client.stats()
        assert (stats.spooled, stats.spool_files) == (8, 3)


def test_first_stats_counts_what_it_can_read_at_once_and_never_waits_for_the_rest(tmp_path: Path) -> None:
    leave_orphan(tmp_path, "orders", 3)
    locked = leave_orphan(tmp_path, "orders", 4)
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # not even readers get in
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM ack_queue_default WHERE _id < 0")
    try:
        with offline_client(tmp_path, write_timeout=3.0) as client:
            started = time.monotonic()
            first = client.stats()
            elapsed = time.monotonic() - started
            assert first.spooled == 3  # the file it could read; the other is not known yet
            assert elapsed < 3.0, f"the first stats() waited {elapsed:.2f}s for a locked file"
    finally:
        holder.close()


def test_flush_has_the_flusher_thread_adopt_the_orphans_never_the_callers(
    spool_dir: Path, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = broker.create_topic("orders-flush-adopts")

    def adopted() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("adopted spool file")]

    leave_orphan(spool_dir, topic, 10)
    with caplog.at_level(logging.INFO, logger="sentinel_durable"), sentinel.Client(
        brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir
    ) as client:
        wait_until(lambda: len(adopted()) == 1, timeout=10)  # the flusher's first pass, as it starts
        leave_orphan(spool_dir, topic, 30)  # left after it: only flush's own pass finds it
        assert client.flush(timeout=30)
    assert [r.threadName for r in adopted()] == ["sentinel-durable-flusher"] * 2  # opened and checked off the caller
    assert len(broker.read_topic(topic, expected=40)) == 40


def test_a_flush_whose_timeout_ends_before_the_adoption_returns_false(spool_dir: Path) -> None:
    leave_orphan(spool_dir, "orders", 5)
    with offline_client(spool_dir) as client:
        assert client.flush(timeout=0) is False
