"""The spool's bounds: at max_spool_bytes each overflow policy refuses, drops the newest, drops the
oldest (never an event in flight) or blocks until room is made or write_timeout passes; a batch
larger than the bound is refused whole; events older than max_event_age expire, counted."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest
from spool_helpers import record, records

from sentinel_durable import SpoolFullError
from sentinel_durable.spool import Spool
from sentinel_durable.testing import wait_until

# --- max_spool_bytes and the overflow policies ----------------------------------------------------


BIG = 1000  # JSON bytes per event in the bound tests


def _fill(spool: Spool, count: int) -> None:
    for _ in range(count):
        spool.put_many([record("x" * BIG)])


def test_overflow_error_refuses_at_the_bound(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="error") as spool:
        with pytest.raises(SpoolFullError) as caught:
            _fill(spool, 1000)
        assert caught.value.max_spool_bytes == 200_000
        pending = spool.counts().pending
        assert 50 < pending < 200
        assert spool.counts().used_bytes <= 200_000


def test_overflow_drop_newest_drops_and_counts(spool_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="drop_newest") as spool:
        first = record("first" + "x" * BIG)
        spool.put_many([first])
        with caplog.at_level(logging.WARNING, logger="sentinel_durable"):
            _fill(spool, 1000)
        counts = spool.counts()
        assert counts.dropped["overflow_newest"] == 1001 - counts.pending
        claim = spool.claim(1)
        assert claim is not None
        assert claim.records[0].event_id == first.event_id
    assert "overflow_newest" in caplog.text


def test_overflow_drop_oldest_keeps_the_newest(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="drop_oldest") as spool:
        first = record("first" + "x" * BIG)
        spool.put_many([first])
        _fill(spool, 999)
        last = record("last" + "x" * BIG)
        spool.put_many([last])
        counts = spool.counts()
        assert counts.dropped["overflow_oldest"] == 1001 - counts.pending
        assert counts.used_bytes <= 200_000
        ids = []
        while (claim := spool.claim(1000)) is not None:
            ids.extend(r.event_id for r in claim.records)
        assert first.event_id not in ids
        assert ids[-1] == last.event_id


def test_dropping_oldest_never_touches_events_in_flight(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        batch = records(10)
        spool.put_many(batch)
        claim = spool.claim(5)  # the flusher has these on the wire
        assert claim is not None
        assert spool._owned.active.drop_oldest_pending(10**9) == 5  # only the five pending ones can go
        counts = spool.counts()
        assert (counts.pending, counts.in_flight) == (0, 5)
        spool.ack(claim)
        assert spool.counts().in_flight == 0
        with sqlite3.connect(spool.active_path) as db:
            assert db.execute("SELECT COUNT(*) FROM ack_queue_default").fetchone()[0] == 0


def test_overflow_block_times_out_when_nobody_makes_room(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="block", write_timeout=0.2) as spool:
        with pytest.raises(SpoolFullError):
            _fill(spool, 1000)
        assert spool.counts().pending > 50


def test_overflow_block_waits_for_room_then_proceeds(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="block", write_timeout=30) as spool:
        _fill(spool, 100)
        blocked = threading.Thread(target=_fill, args=(spool, 100), name="test-blocked-writer")
        blocked.start()
        # The writer is going (about 120 fit)...
        wait_until(lambda: spool.counts().pending >= 105, 20, 0.01, description="the writer to reach the bound")
        assert blocked.is_alive()  # ...and will wait for room at the bound instead of failing
        delivered = 0

        def drained() -> bool:  # as a flusher would
            nonlocal delivered
            claim = spool.claim(50)
            if claim is not None:
                spool.ack(claim)
                delivered += len(claim)
            return not blocked.is_alive() and not spool.counts().pending

        wait_until(drained, 20, 0.01, description="the blocked writer to get through")
        assert delivered == 200


def test_batch_larger_than_the_bound_is_refused_whole(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=100_000, overflow="drop_oldest") as spool:
        with pytest.raises(SpoolFullError):
            spool.put_many(records(200, size=BIG))
        assert spool.counts().pending == 0


# --- max_event_age --------------------------------------------------------------------------------


def test_events_older_than_max_event_age_expire(spool_dir: Path) -> None:
    with Spool(spool_dir, max_event_age=3600) as spool:
        spool.put_many(records(5))
        with spool._owned.active.lock:  # age the first three by two hours
            spool._owned.active._connection.execute(
                "UPDATE ack_queue_default SET timestamp = timestamp - 7200 WHERE _id <= 3"
            )
        assert spool.expire() == 3
        counts = spool.counts()
        assert (counts.pending, counts.dropped) == (2, {"expired": 3})
