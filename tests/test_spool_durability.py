"""What a returned put means: each durability mode commits at its SQLite synchronous level (power
mode fsyncs its inserts, sharing commits between concurrent senders), process and power modes
return only after the commit, the async mode's buffer reaches disk within batch_timeout and at
close; every acknowledged write survives SIGKILL exactly once, and a close racing senders keeps
every event whose put returned."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from spool_helpers import drain_all, record, records

from sentinel_durable.spool import Spool
from sentinel_durable.testing import wait_until

# --- durability modes -----------------------------------------------------------------------------


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
        wait_until(lambda: _committed_rows(spool.active_path) == 10, 5, 0.01, description="the buffer to reach disk")


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


# --- crash safety ---------------------------------------------------------------------------------


WRITER = Path(__file__).parent / "programs" / "spool_writer.py"


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
    wait_until(lambda: len(accepted) >= 20, 30, 0.001, description="the senders in full swing")
    spool.close()  # while they are
    for thread in threads:
        thread.join(timeout=30)
    assert {event["event_id"] for event in drain_all(spool_dir)} == set(accepted)
