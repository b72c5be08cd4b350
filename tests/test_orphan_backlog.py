"""The backlog left by dead processes is in ``stats()`` from the first call, read without waiting:
the first ``stats()`` neither adopts nor waits for a file another tool holds locked, and a file
is counted once, before and after the flusher adopts it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from conftest import offline_client
from spool_helpers import leave_spool

import sentinel_durable as sentinel
from sentinel_durable.spool import owner_alive
from sentinel_durable.testing import EmbeddedBroker, wait_until

pytestmark = pytest.mark.usefixtures("no_topic_from_the_environment")


def first_stats_while_the_pass_waits(
    client: sentinel.Client, locked: Path, caplog: pytest.LogCaptureFixture
) -> sentinel.Stats:
    """The client's first ``stats()``, made once the flusher's first pass has locked ``locked`` and waits
    on the other tool's lock (until write_timeout, then it logs "will try again"): it answers meanwhile."""
    wait_until(lambda: owner_alive(locked), 10, 0.005, description="the adoption pass on the locked file")
    first = client.stats()
    assert "will try again" not in caplog.text, "the first stats() waited for the locked file"
    return first


def test_first_stats_counts_an_orphan_another_tool_holds_locked_without_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orphan = leave_spool(tmp_path, 7, topic="orders").path
    holder = sqlite3.connect(orphan, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another tool writes to it: a writer of this file waits
    try:
        with (
            caplog.at_level(logging.INFO, logger="sentinel_durable.spool"),
            offline_client(tmp_path, "orders", write_timeout=3.0) as client,
        ):
            first = first_stats_while_the_pass_waits(client, orphan, caplog)
            assert first.spooled == 7
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
    leave_spool(tmp_path, 3, topic="orders")
    leave_spool(tmp_path, 4, topic="payments")  # another topic: never this client's backlog
    leave_spool(tmp_path, 5, topic=None)  # no recorded topic: this client adopts it
    with offline_client(tmp_path, "orders") as client:
        first = client.stats()
        assert (first.spooled, first.in_flight, first.spool_files) == (8, 0, 3)
        client.flush(timeout=0.1)  # the adoption pass is done once this returns
        stats = client.stats()
        assert (stats.spooled, stats.spool_files) == (8, 3)


def test_first_stats_counts_what_it_can_read_at_once_and_never_waits_for_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leave_spool(tmp_path, 3, topic="orders")
    locked = leave_spool(tmp_path, 4, topic="orders").path
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # not even readers get in
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM ack_queue_default WHERE _id < 0")
    try:
        with (
            caplog.at_level(logging.INFO, logger="sentinel_durable.spool"),
            offline_client(tmp_path, "orders", write_timeout=3.0) as client,
        ):
            first = first_stats_while_the_pass_waits(client, locked, caplog)
            assert first.spooled == 3  # the file it could read; the other is not known yet
            wait_until(lambda: "will try again" in caplog.text, 10, description="the pass to leave the locked file")
    finally:
        holder.close()


def test_flush_has_the_flusher_thread_adopt_the_orphans_never_the_callers(
    spool_dir: Path, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = broker.create_topic("orders-flush-adopts")

    def adopted() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("adopted spool file")]

    leave_spool(spool_dir, 10, topic=topic)
    with caplog.at_level(logging.INFO, logger="sentinel_durable"), sentinel.Client(
        brokers=[broker.bootstrap_servers], topic=topic, spool_dir=spool_dir
    ) as client:
        wait_until(lambda: len(adopted()) == 1, timeout=10)  # the flusher's first pass, as it starts
        leave_spool(spool_dir, 30, topic=topic)  # left after it: only flush's own pass finds it
        assert client.flush(timeout=30)
    assert [r.threadName for r in adopted()] == ["sentinel-durable-flusher"] * 2  # opened and checked off the caller
    assert len(broker.read_topic(topic, expected=40)) == 40


def test_a_flush_whose_timeout_ends_before_the_adoption_returns_false(spool_dir: Path) -> None:
    leave_spool(spool_dir, 5, topic="orders")
    with offline_client(spool_dir, topic="orders") as client:
        assert client.flush(timeout=0) is False
