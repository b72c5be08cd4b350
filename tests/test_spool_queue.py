"""The spool as a queue: put events are claimed in order with what the transport needs, acked
(deleted), released (back first, with the attempt and error) or dead-lettered (kept aside, requeued
or purged); each operation is one transaction, a claim a seek; a drained spool gives its space back;
plain persist-queue reads the files, an event in flight as pending."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import persistqueue
import persistqueue.serializers.json
from spool_helpers import record, records

from sentinel_durable.spool import Spool, read_dead_letters, schema

# --- the queue ------------------------------------------------------------------------------------


def test_put_many_then_claim_returns_events_in_order(spool_dir: Path) -> None:
    batch = records(50)
    with Spool(spool_dir) as spool:
        spool.put_many(batch)
        claim = spool.claim(20)
        assert claim is not None
        assert [r.event_id for r in claim.records] == [r.event_id for r in batch[:20]]
        assert [r.data for r in claim.records] == [r.data for r in batch[:20]]
        assert spool.counts().pending == 30
        assert spool.counts().in_flight == 20


def test_claimed_records_carry_what_the_transport_needs(spool_dir: Path) -> None:
    original = record("hello")
    with Spool(spool_dir) as spool:
        spool.put_many([original])
        claim = spool.claim(1)
        assert claim is not None
        (claimed,) = claim.records
    assert (claimed.event_id, claimed.service_name, claimed.model) == (original.event_id, "svc", "m")
    assert claimed.event_time_ms == original.event_time_ms
    assert claimed.attempts == 0


def test_ack_deletes_the_rows(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many(records(10))
        claim = spool.claim(10)
        assert claim is not None
        spool.ack(claim)
        assert spool.claim(10) is None
        with sqlite3.connect(spool.active_path) as db:
            assert db.execute("SELECT COUNT(*) FROM ack_queue_default").fetchone()[0] == 0


def test_release_puts_events_back_with_attempt_and_error(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many(records(3))
        claim = spool.claim(3)
        assert claim is not None
        spool.release(claim, error="broker away")
        again = spool.claim(3)
        assert again is not None
        assert [r.event_id for r in again.records] == [r.event_id for r in claim.records]
        assert all(r.attempts == 1 for r in again.records)
        with sqlite3.connect(spool.active_path) as db:
            assert {row[0] for row in db.execute("SELECT last_error FROM ack_queue_default")} == {"broker away"}


def test_dead_letter_keeps_error_and_attempts_and_does_not_block_others(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many(records(3))
        claim = spool.claim(3)
        assert claim is not None
        spool.dead_letter(claim, claim.records[:1], "MessageSizeTooLargeError")
        spool.release(claim, claim.records[1:])
        counts = spool.counts()
        assert (counts.pending, counts.in_flight, counts.dead_letters) == (2, 0, 1)
        again = spool.claim(10)
        assert again is not None
        assert [r.event_id for r in again.records] == [r.event_id for r in claim.records[1:]]
        letters = read_dead_letters(spool.active_path)  # what `sentinel-durable dlq list` shows
        assert [(letter.event_id, letter.attempts, letter.last_error) for letter in letters] == [
            (claim.records[0].event_id, 1, "MessageSizeTooLargeError")
        ]


def test_dead_letters_can_be_requeued_and_purged(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many(records(4))
        claim = spool.claim(4)
        assert claim is not None
        spool.dead_letter(claim, claim.records, "bad topic")
        assert spool._owned.active.requeue_dead_letters() == 4
        assert spool.counts().pending == 4
        claim = spool.claim(4)
        assert claim is not None
        spool.dead_letter(claim, claim.records, "bad topic")
        assert spool._owned.active.purge_dead_letters() == 4
        assert spool.counts().dead_letters == 0


def test_each_operation_is_one_transaction(spool_dir: Path) -> None:
    statements: list[str] = []
    with Spool(spool_dir) as spool:
        spool._owned.active._connection.set_trace_callback(statements.append)
        spool.put_many(records(100))
        claim = spool.claim(100)
        assert claim is not None
        spool.ack(claim)
    assert statements.count("BEGIN IMMEDIATE") == 2  # put_many and ack; a claim only reads
    assert statements.count("COMMIT") == 2


def test_claim_seeks_by_rowid_instead_of_scanning(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool, sqlite3.connect(spool.active_path) as db:
        plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + schema.SQL_CLAIM, (100, 10)))
    assert "INTEGER PRIMARY KEY (rowid>?)" in plan, plan


def test_claims_find_events_spooled_after_the_newest_were_acked(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many(records(3))
        first = spool.claim(1)
        assert first is not None
        spool.dead_letter(first, first.records, "bad")  # row 1 stays, as a dead letter
        rest = spool.claim(10)
        assert rest is not None
        spool.ack(rest)  # rows 2 and 3 go: the next insert reuses id 2, behind the claim cursor
        later = records(2)
        spool.put_many(later)
        again = spool.claim(10)
        assert again is not None
        assert [r.event_id for r in again.records] == [r.event_id for r in later]


def test_released_events_are_claimed_again_first(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        batch = records(6)
        spool.put_many(batch)
        claim = spool.claim(3)
        assert claim is not None
        spool.release(claim, claim.records[1:2])  # the middle one comes back
        spool.ack(claim, [claim.records[0], claim.records[2]])
        again = spool.claim(10)
        assert again is not None
        assert [r.event_id for r in again.records] == [batch[1].event_id, *(r.event_id for r in batch[3:])]


def test_drained_spool_gives_its_space_back(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        for _ in range(20):
            spool.put_many(records(500, size=2000))
        peak = spool.counts().disk_bytes
        while (claim := spool.claim(1000)) is not None:
            spool.ack(claim)
        after = spool.counts().disk_bytes
    assert peak > 10_000_000
    assert after < peak * 0.05, (peak, after)


# --- persist-queue compatibility ------------------------------------------------------------------


def test_plain_persist_queue_reads_the_pending_events(spool_dir: Path) -> None:
    batch = records(5)
    with Spool(spool_dir) as spool:
        spool.put_many(batch)
        claim = spool.claim(1)
        assert claim is not None
        spool.ack(claim)  # the first is delivered; four stay pending
        name = spool.active_path.name
        queue = persistqueue.SQLiteAckQueue(
            path=str(spool_dir), db_file_name=name, serializer=persistqueue.serializers.json
        )
        assert queue.qsize() == 4
        got = [queue.get(block=False) for _ in range(4)]
        queue.close()
    assert got == [json.loads(r.data) for r in batch[1:]]


def test_events_in_flight_are_pending_to_any_other_reader(spool_dir: Path) -> None:
    # Claims live in the owner's memory: if it dies mid-delivery, whoever reads the file next
    # (a new owner, plain persist-queue, the CLI) sees those events as pending, not lost.
    with Spool(spool_dir) as spool:
        spool.put_many(records(3))
        assert spool.claim(3) is not None
        assert spool.counts().in_flight == 3
        queue = persistqueue.SQLiteAckQueue(
            path=str(spool_dir), db_file_name=spool.active_path.name, serializer=persistqueue.serializers.json,
            auto_resume=False,
        )  # fmt: skip
        assert (queue.unack_count(), queue.qsize()) == (0, 3)
        queue.close()


def test_a_batch_acked_whole_is_deleted_by_one_range_statement_and_only_its_rows(spool_dir: Path) -> None:
    statements: list[str] = []
    with Spool(spool_dir) as spool:
        batch = records(10)
        spool.put_many(batch)
        first = spool.claim(4)
        second = spool.claim(4)
        assert first is not None
        assert second is not None
        spool._owned.active._connection.set_trace_callback(statements.append)
        spool.ack(second)  # rows 5-8, consecutive: one statement
        spool.ack(first, [first.records[0], first.records[2]])  # rows 1 and 3: one statement each
        spool._owned.active._connection.set_trace_callback(None)
        deletes = [statement for statement in statements if statement.startswith("DELETE")]
        assert len(deletes) == 3
        assert "BETWEEN 5 AND 8" in deletes[0]
        assert spool.counts().pending == 2  # rows 9 and 10, never claimed
        spool.release(first, [first.records[1], first.records[3]])
        left = spool.claim(10)
        assert left is not None
    assert [r.event_id for r in left.records] == [batch[i].event_id for i in (1, 3, 8, 9)]
