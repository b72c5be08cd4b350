"""The spool: batched, bounded, crash-safe, one owner per file, readable by persist-queue."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import persistqueue
import persistqueue.serializers.json
import pytest
from spool_helpers import drain_all, record, records

from sentinel_durable import ConfigError, SpoolFullError
from sentinel_durable.spool import Spool, owner_alive, read_dead_letters, schema, spool_files

WRITER = Path(__file__).parent / "programs" / "spool_writer.py"


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


# --- the queue ------------------------------------------------------------------------------


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


# --- persist-queue compatibility --------------------------------------------------------------


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


# --- durability modes -------------------------------------------------------------------------------


def _committed_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM ack_queue_default").fetchone()[0])


@pytest.mark.parametrize("durability", ["process", "power", "async"])
def test_each_mode_commits_inserts_at_its_sqlite_synchronous_level(spool_dir: Path, durability: str) -> None:
    statements: list[str] = []
    with Spool(spool_dir, durability=durability) as spool:  # type: ignore[arg-type]
        connection = spool._owned.active._connection
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL between writes
        connection.set_trace_callback(statements.append)
        spool.put_many([record()])
        spool.commit_buffered()
        claim = spool.claim(1)
        assert claim is not None
        spool.ack(claim)
        connection.set_trace_callback(None)
    fsynced = [i for i, sql in enumerate(statements) if sql == "PRAGMA synchronous = FULL"]
    if durability == "power":  # the insert, and only the insert, is fsynced
        assert len(fsynced) == 1
        assert statements[fsynced[0] + 1].startswith("INSERT")  # one row: its own transaction
        assert statements[fsynced[0] + 2] == "PRAGMA synchronous = NORMAL"
    else:
        assert fsynced == []


@pytest.mark.parametrize("durability", ["process", "power"])
def test_put_returns_only_after_commit(spool_dir: Path, durability: str) -> None:
    with Spool(spool_dir, durability=durability) as spool:  # type: ignore[arg-type]
        for n in range(1, 21):
            spool.put_many([record()])
            assert _committed_rows(spool.active_path) == n  # seen from another connection


def test_power_mode_concurrent_senders_share_commits(spool_dir: Path) -> None:
    per_thread, threads = 200, 8
    with Spool(spool_dir, durability="power") as spool:
        start = threading.Barrier(threads)

        def send() -> None:
            start.wait()
            for _ in range(per_thread):
                spool.put_many([record()])

        workers = [threading.Thread(target=send) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        counts = spool.counts()
        assert counts.pending == per_thread * threads
        assert _committed_rows(spool.active_path) == per_thread * threads
        assert counts.commits < per_thread * threads  # group commit: fewer transactions than sends


def test_async_mode_reaches_disk_within_batch_timeout(spool_dir: Path) -> None:
    with Spool(spool_dir, durability="async", batch_timeout=0.05) as spool:
        spool.put_many(records(10))
        assert spool.counts().pending == 10  # buffered events count as pending
        deadline = time.monotonic() + 5
        while _committed_rows(spool.active_path) < 10:
            assert time.monotonic() < deadline, "buffered events never reached disk"
            threading.Event().wait(0.01)


def test_async_mode_commit_buffered_writes_at_once(spool_dir: Path) -> None:
    with Spool(spool_dir, durability="async", batch_timeout=60) as spool:
        spool.put_many(records(10))
        spool.commit_buffered()
        assert _committed_rows(spool.active_path) == 10


def test_async_mode_close_writes_the_buffer(spool_dir: Path) -> None:
    spool = Spool(spool_dir, durability="async", batch_timeout=60)
    batch = records(7)
    spool.put_many(batch)
    spool.close()
    assert {e["event_id"] for e in drain_all(spool_dir)} == {r.event_id for r in batch}


# --- crash safety ------------------------------------------------------------------------------------


def _kill_writer_after(spool_dir: Path, durability: str, seed: int, lines: int) -> list[str]:
    """Start the writer, kill -9 it once it has reported ``lines`` written events; return them all."""
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(spool_dir), durability, str(seed)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    acknowledged: list[str] = []
    for line in process.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= lines:
            process.kill()  # SIGKILL while the writer is busy writing what comes next
            break
    process.wait(timeout=30)
    assert process.returncode == -9
    # Lines already written to the pipe before the kill were acknowledged too.
    acknowledged.extend(line.strip() for line in process.stdout if line.endswith("\n"))
    return acknowledged


@pytest.mark.parametrize("durability", ["process", "power"])
def test_every_acknowledged_write_survives_sigkill_exactly_once(tmp_path: Path, durability: str) -> None:
    rounds = int(os.environ.get("SENTINEL_KILL_ROUNDS", "20"))
    rng_seed = int.from_bytes(os.urandom(4), "little")
    for round_number in range(rounds):
        spool_dir = tmp_path / f"round-{round_number}"
        seed = rng_seed + round_number
        acknowledged = _kill_writer_after(spool_dir, durability, seed, lines=1 + seed % 1500)
        found = drain_all(spool_dir)
        ids = [event["event_id"] for event in found]
        assert len(ids) == len(set(ids)), f"round {round_number}: an event is in the spool twice"
        missing = set(acknowledged) - set(ids)
        assert not missing, f"round {round_number} (seed {seed}): {len(missing)} acknowledged events lost"
        batches: dict[str, list[dict[str, str]]] = {}
        for event in found:
            batches.setdefault(event["metadata"]["batch"], []).append(event["metadata"])
        for number, members in batches.items():
            assert len(members) == int(members[0]["size"]), f"batch {number} is only partly in the spool"


# --- owners ------------------------------------------------------------------------------------------


def test_two_spools_on_one_directory_use_different_files(spool_dir: Path) -> None:
    with Spool(spool_dir) as first, Spool(spool_dir) as second:
        assert first.active_path != second.active_path
        assert owner_alive(first.active_path)
        assert owner_alive(second.active_path)


def test_a_second_process_takes_another_file(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many([record()])
        code = (
            "import sys; from pathlib import Path; from sentinel_durable.spool import Spool; "
            f"s = Spool(Path({str(spool_dir)!r})); s.adopt_orphans(); print(s.active_path.name, s.counts().pending)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        assert out[0] != spool.active_path.name
        assert out[1] == "0"  # the live owner's events are not taken


def _leave_orphan(spool_dir: Path, count: int, size: int = 10, claim: int = 0) -> Path:
    """A process spools ``count`` events, claims ``claim`` of them, and dies without closing
    (after a WAL checkpoint, so that the events are in the database file itself)."""
    code = (
        "import os; from pathlib import Path; from sentinel_durable.spool import Spool; "
        "from spool_helpers import records; "
        f"s = Spool(Path({str(spool_dir)!r})); s.put_many(records({count}, {size})); "
        f"s.claim({claim}) if {claim} else None; s._owned.active.shrink(); print(s.active_path, flush=True);"
        " os._exit(0)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    return Path(out.stdout.strip())


def test_files_of_a_dead_owner_are_adopted_and_claimed_rows_return_to_pending(spool_dir: Path) -> None:
    _leave_orphan(spool_dir, 10, claim=4)
    (orphan,) = spool_files(spool_dir)
    assert not owner_alive(orphan)
    with Spool(spool_dir) as spool:
        assert spool.adopt_orphans() == 1
        counts = spool.counts()
        assert (counts.pending, counts.in_flight, counts.files) == (10, 0, 2)
        while (claim := spool.claim(3)) is not None:
            spool.ack(claim)
        assert not orphan.exists(), "a drained adopted file is removed"
        assert spool.counts().files == 1


def test_forked_child_writes_its_own_file(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many([record()])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                spool.put_many(records(3))
                os.write(write, f"{spool.active_path.name} {spool.counts().pending}".encode())
            finally:
                os._exit(0)
        os.close(write)
        child_file, child_pending = os.read(read, 1000).decode().split()
        os.waitpid(pid, 0)
        os.close(read)
        assert child_file != spool.active_path.name
        assert child_pending == "3"
        spool.put_many([record()])  # the parent keeps working
        assert spool.counts().pending == 2
        assert owner_alive(spool.active_path)
    assert len(drain_all(spool_dir)) == 5  # the parent's two and the child's three, each left in its file


# --- bounds ------------------------------------------------------------------------------------------

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


def test_overflow_block_times_out_when_nobody_makes_room(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="block", write_timeout=0.2) as spool:
        with pytest.raises(SpoolFullError):
            _fill(spool, 1000)
        assert spool.counts().pending > 50


def test_overflow_block_waits_for_room_then_proceeds(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=200_000, overflow="block", write_timeout=30) as spool:
        _fill(spool, 100)
        blocked = threading.Thread(target=_fill, args=(spool, 100))
        blocked.start()
        deadline = time.monotonic() + 20
        while spool.counts().pending < 105:  # the writer is going (about 120 fit)...
            assert time.monotonic() < deadline
            blocked.join(timeout=0.01)
        assert blocked.is_alive()  # ...and will wait for room at the bound instead of failing
        delivered = 0
        while blocked.is_alive() or spool.counts().pending:  # drain as a flusher would
            claim = spool.claim(50)
            if claim is not None:
                spool.ack(claim)
                delivered += len(claim)
            blocked.join(timeout=0.01)
            assert time.monotonic() < deadline, "the blocked writer never got through"
        assert delivered == 200


def test_batch_larger_than_the_bound_is_refused_whole(spool_dir: Path) -> None:
    with Spool(spool_dir, max_spool_bytes=100_000, overflow="drop_oldest") as spool:
        with pytest.raises(SpoolFullError):
            spool.put_many(records(200, size=BIG))
        assert spool.counts().pending == 0


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


# --- corruption and permissions -------------------------------------------------------------------


def test_unreadable_file_is_quarantined_and_sends_keep_working(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir.mkdir(parents=True)
    bad = spool_dir / "spool-00000000000000000001-1-deadbeef.db"
    bad.write_bytes(b"this is not a database" * 1000)
    with Spool(spool_dir) as spool, caplog.at_level(logging.ERROR, logger="sentinel_durable"):
        assert spool.adopt_orphans() == 0
        spool.put_many([record()])
        counts = spool.counts()
        assert counts.pending == 1
        assert len(counts.quarantined) == 1
    assert not bad.exists()
    quarantined = spool_dir / counts.quarantined[0]
    assert quarantined.exists()
    assert counts.quarantined[0] in caplog.text


def test_file_failing_its_integrity_check_is_quarantined(spool_dir: Path) -> None:
    path = _leave_orphan(spool_dir, 2000, size=500)
    with open(path, "r+b") as handle:  # damage pages in the middle
        handle.seek(path.stat().st_size // 2)
        handle.write(os.urandom(8192))
    with Spool(spool_dir) as spool:
        spool.adopt_orphans()
        spool.put_many([record()])
        counts = spool.counts()
        assert [name.split(".corrupt-")[0] for name in counts.quarantined] == [path.name]
        assert counts.pending == 1


def test_directory_and_files_are_private_whatever_the_umask(spool_dir: Path) -> None:
    old = os.umask(0)
    try:
        with Spool(spool_dir) as spool:
            spool.put_many(records(10))
            assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
            names = sorted(p.name for p in spool_dir.iterdir())
            assert any(n.endswith("-wal") for n in names)
            assert any(n.endswith("-shm") for n in names)
            for path in spool_dir.iterdir():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        os.umask(old)


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/sentinel-durable-spool")  # even root cannot create here
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    with pytest.raises(ConfigError) as caught:
        Spool(target)
    assert caught.value.name == "spool_dir"


def test_closing_an_empty_spool_leaves_no_files(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        claim_none = spool.claim(10)
        assert claim_none is None
    assert list(spool_dir.iterdir()) == []


def test_file_from_a_newer_version_is_left_alone(spool_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _leave_orphan(spool_dir, 3)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with Spool(spool_dir) as spool, caplog.at_level(logging.WARNING, logger="sentinel_durable"):
        assert spool.adopt_orphans() == 0
        assert spool.counts().quarantined == []
    assert path.exists()
    assert "newer sentinel-durable" in caplog.text


# --- races found in review ----------------------------------------------------------------------


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


@pytest.mark.parametrize("durability", ["process", "async"])
def test_close_racing_senders_keeps_every_event_whose_put_returned(spool_dir: Path, durability: str) -> None:
    spool = Spool(spool_dir, durability=durability)  # type: ignore[arg-type]
    accepted: list[str] = []
    start = threading.Barrier(5)

    def send() -> None:
        mine = records(200)
        start.wait()
        for record_ in mine:
            try:
                if spool.put_many([record_]):
                    accepted.append(record_.event_id)
            except Exception:
                return  # closed: refused, not lost

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    deadline = time.monotonic() + 30
    while len(accepted) < 20:  # close while the senders are in full swing
        assert time.monotonic() < deadline
        threads[0].join(timeout=0.001)
    spool.close()
    for thread in threads:
        thread.join(timeout=30)
    assert {event["event_id"] for event in drain_all(spool_dir)} == set(accepted)


def test_a_file_that_is_only_busy_is_not_quarantined(spool_dir: Path) -> None:
    path = _leave_orphan(spool_dir, 5)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup tool holding the file for a moment
    try:
        with Spool(spool_dir, write_timeout=0.2) as spool:
            assert spool.adopt_orphans() == 0
            assert spool.counts().quarantined == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert path.exists()
    assert len(drain_all(spool_dir)) == 5  # adopted once it is free


def test_grandchild_of_a_fork_can_use_the_spool(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many([record()])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                grandchild = os.fork()  # before the child ever used the spool
                if grandchild == 0:
                    try:
                        spool.put_many(records(2))
                        os.write(write, str(spool.counts().pending).encode())
                    finally:
                        os._exit(0)
                os.waitpid(grandchild, 0)
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        assert os.read(read, 100) == b"2"
        _, code = os.waitpid(pid, 0)
        os.close(read)
        assert os.waitstatus_to_exitcode(code) == 0
        assert spool.counts().pending == 1
