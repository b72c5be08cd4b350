"""Issue 12, points 1, 4 and 9: a spool file records its topic; a file without a schema is empty;
power mode fsyncs the directories it creates; the backlog is visible from the first ``stats()``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerUnderTest, offline_client, run_cli, track
from spool_helpers import leave_spool, records

import sentinel_durable as sentinel
from sentinel_durable import cli
from sentinel_durable.spool import Spool, spool_files
from sentinel_durable.testing import wait_until

pytestmark = pytest.mark.usefixtures("no_topic_from_the_environment")


def recorded_topic(path: Path) -> str | None:
    """The topic a spool file records, read with plain sqlite3 (None when it records none)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sentinel_meta'").fetchone():
            return None
        row = db.execute("SELECT value FROM sentinel_meta WHERE key = 'topic'").fetchone()
    return None if row is None else str(row[0])


def leave_offline(directory: Path, topic: str, count: int, service: str) -> list[str]:
    """A client of ``topic`` that never reaches a broker tracks ``count`` events and exits."""
    client = offline_client(directory, topic)
    try:
        return track(client, count, service)
    finally:
        client.close(timeout=0.2)


def services(broker: BrokerUnderTest, topic: str, expected: int) -> Counter[str]:
    return Counter(json.loads(r.value)["service_name"] for r in broker.read_topic(topic, expected=expected))


# --- 1. spool files record their destination ---------------------------------------------------


def test_a_client_delivers_only_its_own_topics_files(tmp_path: Path, broker: BrokerUnderTest, topic: str) -> None:
    topic_a, topic_b = f"{topic}-A", f"{topic}-B"
    sent_a = leave_offline(tmp_path, topic_a, 50, "app-A")
    with sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic_b, spool_dir=tmp_path) as app_b:
        track(app_b, 5, "app-B")
        assert app_b.flush(timeout=60)
        assert app_b.stats().delivered == 5
    assert services(broker, topic_b, expected=5) == {"app-B": 5}
    (left,) = spool_files(tmp_path)  # A's file, untouched, still for topic-A
    assert recorded_topic(left) == topic_a
    with sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic_a, spool_dir=tmp_path) as app_a:
        assert app_a.flush(timeout=60)
    records_a = broker.read_topic(topic_a, expected=50)
    assert {json.loads(r.value)["event_id"] for r in records_a} == set(sent_a)
    assert services(broker, topic_b, expected=5) == {"app-B": 5}


def test_drain_delivers_each_file_to_the_topic_it_records(
    tmp_path: Path, broker: BrokerUnderTest, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic_a, topic_b = f"{topic}-A", f"{topic}-B"
    sent_a = leave_offline(tmp_path, topic_a, 50, "app-A")
    sent_b = leave_offline(tmp_path, topic_b, 7, "app-B")
    code, out, err = run_cli(capsys, "drain", "--spool-dir", str(tmp_path), "--brokers", broker.bootstrap_servers)
    assert code == 0, err
    assert out.count(f"delivering to topic {topic_a} (recorded in file)") == 1
    assert out.count(f"delivering to topic {topic_b} (recorded in file)") == 1
    assert f"delivered 50 events to {topic_a}" in out
    assert f"delivered 7 events to {topic_b}" in out
    assert {json.loads(r.value)["event_id"] for r in broker.read_topic(topic_a, expected=50)} == set(sent_a)
    assert {json.loads(r.value)["event_id"] for r in broker.read_topic(topic_b, expected=7)} == set(sent_b)
    assert broker.read_topic("llm.telemetry") == []  # the default topic got nothing
    assert spool_files(tmp_path) == []


def test_drain_with_topic_overrides_the_recorded_one_and_says_so(
    tmp_path: Path, broker: BrokerUnderTest, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic_a, elsewhere = f"{topic}-A", f"{topic}-X"
    sent = leave_offline(tmp_path, topic_a, 50, "app-A")
    code, out, err = run_cli(
        capsys, "drain", "--spool-dir", str(tmp_path), "--brokers", broker.bootstrap_servers, "--topic", elsewhere
    )
    assert code == 0, err
    assert f"delivering to topic {elsewhere} (overridden by --topic; file recorded {topic_a})" in out
    assert f"delivered 50 events to {elsewhere}" in out
    assert {json.loads(r.value)["event_id"] for r in broker.read_topic(elsewhere, expected=50)} == set(sent)
    assert broker.read_topic(topic_a) == []


def test_status_shows_each_files_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leave_offline(tmp_path, "orders", 2, "svc")
    code, out, _ = run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")
    assert code == 0
    assert [f["topic"] for f in json.loads(out)["files"]] == ["orders"]
    code, out, _ = run_cli(capsys, "status", "--spool-dir", str(tmp_path))
    assert code == 0
    assert out.splitlines()[1].split()[-1] == "topic"
    assert out.splitlines()[2].split()[-1] == "orders"


def make_old_format(path: Path) -> None:
    """Turn a spool file into what sentinel-durable 0.1 wrote: schema 1, no recorded topic."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE sentinel_meta")
        db.execute("PRAGMA user_version = 1")


def test_a_file_written_before_topics_were_recorded_is_adopted_and_stamped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leave_offline(tmp_path, "old", 3, "svc")
    (path,) = spool_files(tmp_path)
    make_old_format(path)
    assert recorded_topic(path) is None
    with caplog.at_level(logging.INFO, logger="sentinel_durable"), Spool(tmp_path, topic="new") as spool:
        assert spool.adopt_orphans() == 1
        assert spool.counts().pending == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "sentinel_durable.spool"]
        assert len(warnings) == 1
        assert path.name in warnings[0].getMessage()
        assert "'new'" in warnings[0].getMessage()
        assert "p0" not in caplog.text  # never the events' content
        assert recorded_topic(path) == "new"
        spool._owned.adopted.clear()  # leave it undrained, as a crashed process would
        spool._owned.active.close()
        spool._closed = True
    with Spool(tmp_path, topic="other") as other:
        assert other.adopt_orphans() == 0  # now it records "new": not for "other"


def test_drain_sends_a_file_without_a_recorded_topic_to_the_configured_one(
    tmp_path: Path,
    broker: BrokerUnderTest,
    topic: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured, recorded = f"{topic}-env", f"{topic}-B"
    new = leave_offline(tmp_path, recorded, 3, "new")
    old = leave_offline(tmp_path, "whatever", 4, "old")  # the newer file: listed after B's
    (legacy,) = [path for path in spool_files(tmp_path) if recorded_topic(path) == "whatever"]
    make_old_format(legacy)  # now (a client would adopt it, whatever its topic)
    monkeypatch.setenv("SENTINEL_TOPIC", configured)  # names the topic of files that record none
    code, out, err = run_cli(capsys, "drain", "--spool-dir", str(tmp_path), "--brokers", broker.bootstrap_servers)
    assert code == 0, err
    assert f"delivering to topic {configured} (the configured topic; the file records no topic)" in out
    assert f"delivering to topic {recorded} (recorded in file)" in out
    assert {json.loads(r.value)["event_id"] for r in broker.read_topic(configured, expected=4)} == set(old)
    assert {json.loads(r.value)["event_id"] for r in broker.read_topic(recorded, expected=3)} == set(new)


def test_dlq_requeue_with_topic_moves_the_dead_letters_to_that_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(tmp_path, topic="orders")
    batch = records(5)
    spool.put_many(batch)
    claim = spool.claim(2)
    assert claim is not None
    spool.dead_letter(claim, claim.records, "MessageSizeTooLargeError: too big")
    spool._owned.active.close()  # left by a process that is gone
    spool._closed = True
    code, out, err = run_cli(capsys, "dlq", "requeue", "--spool-dir", str(tmp_path), "--topic", "orders-retry")
    assert code == 0, err
    assert "requeued 2 dead letters for topic orders-retry (overridden by --topic; file recorded orders)" in out
    document = json.loads(run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")[1])
    by_topic = {f["topic"]: (f["pending"], f["dead_letters"]) for f in document["files"]}
    assert by_topic == {"orders": (3, 0), "orders-retry": (2, 0)}
    with Spool(tmp_path, topic="orders-retry") as retry:
        retry.adopt_orphans()
        claimed = retry.claim(10)
        assert claimed is not None
        assert [r.event_id for r in claimed.records] == [r.event_id for r in batch[:2]]


def trace_moves(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Note each SQL statement the command line runs on the file it moves from and the one it moves to."""
    statements: list[tuple[str, str]] = []

    def traced(opener: Callable[..., Any], role: str) -> Callable[..., Any]:
        @contextlib.contextmanager
        def open_traced(*args: Any) -> Iterator[Any]:
            with opener(*args) as spool_file:
                spool_file._connection.set_trace_callback(lambda sql: statements.append((role, sql)))
                yield spool_file

        return open_traced

    monkeypatch.setattr(cli, "owned_file", traced(cli.owned_file, "source"))
    monkeypatch.setattr(cli, "new_file", traced(cli.new_file, "target"))
    return statements


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds through /proc")
def test_dlq_requeue_with_topic_fsyncs_the_moved_events_before_deleting_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(tmp_path, topic="orders", durability="process")
    spool.put_many(records(5))
    claim = spool.claim(3)
    assert claim is not None
    spool.dead_letter(claim, claim.records, "bad")
    spool._owned.active.close()
    spool._closed = True
    statements = trace_moves(monkeypatch)
    synced = record_directory_fsyncs(monkeypatch)
    code, _, err = run_cli(capsys, "dlq", "requeue", "--spool-dir", str(tmp_path), "--topic", "orders-retry")
    assert code == 0, err
    target = [sql for role, sql in statements if role == "target"]
    deleted_at = next(i for i, (role, sql) in enumerate(statements) if role == "source" and sql.startswith("DELETE"))
    inserted_at = [i for i, (role, sql) in enumerate(statements) if role == "target" and sql.startswith("INSERT")]
    assert len(inserted_at) == 3
    assert max(inserted_at) < deleted_at  # written there before deleted here
    first_insert = target.index(statements[inserted_at[0]][1])
    levels = [sql for sql in target[:first_insert] if "synchronous" in sql]
    assert levels[-1:] == ["PRAGMA synchronous = FULL"]  # the insert's commit is fsynced
    after = target[first_insert:]
    assert after.index("COMMIT") < after.index("PRAGMA synchronous = NORMAL")
    # and the new file's name is on disk too
    (moved_to,) = [p for p in spool_files(tmp_path) if recorded_topic(p) == "orders-retry"]
    assert any(path == str(tmp_path) and moved_to.name in names for path, names in synced)


def test_dlq_requeue_without_topic_keeps_the_recorded_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = Spool(tmp_path, topic="orders")
    spool.put_many(records(3))
    claim = spool.claim(1)
    assert claim is not None
    spool.dead_letter(claim, claim.records, "bad")
    spool._owned.active.close()
    spool._closed = True
    code, out, _ = run_cli(capsys, "dlq", "requeue", "--spool-dir", str(tmp_path))
    assert code == 0
    assert "requeued 1 dead letters for topic orders (recorded in file)" in out
    assert [f["pending"] for f in json.loads(run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")[1])
            ["files"]] == [3]  # fmt: skip


# --- 4. a power cut right after Client() --------------------------------------------------------


def header_only_file(directory: Path) -> Path:
    """What a power cut right after the old Client() left: SQLite's header (WAL mode), no table."""
    path = directory / "spool-00000000000000000002-1-cut.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert path.stat().st_size > 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    return path


def test_export_reads_every_good_file_beside_one_without_a_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = leave_spool(tmp_path, 30).event_ids
    header_only_file(tmp_path)
    second = leave_spool(tmp_path, 20).event_ids
    output = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "export", "--spool-dir", str(tmp_path), "--output", str(output))
    assert code == 0, err
    assert "exported 50 events" in err
    assert [json.loads(line)["event_id"] for line in output.read_text().splitlines()] == first + second
    code, out, _ = run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")
    assert code == 0
    assert json.loads(out)["total"]["pending"] == 50
    assert run_cli(capsys, "dlq", "list", "--spool-dir", str(tmp_path))[0] == 0


def test_adoption_treats_a_file_without_a_schema_as_empty(tmp_path: Path) -> None:
    sent = leave_spool(tmp_path, 10).event_ids
    cut = header_only_file(tmp_path)
    with Spool(tmp_path) as spool:
        assert spool.adopt_orphans() == 1  # the good file; the empty one is removed
        counts = spool.counts()
        assert (counts.pending, counts.quarantined) == (10, [])
        claim = spool.claim(100)
        assert claim is not None
        assert [r.event_id for r in claim.records] == sent
    assert not cut.exists()


def test_a_new_files_schema_and_topic_are_in_the_database_file_before_any_event(tmp_path: Path) -> None:
    # What survives a power cut is what reached the database file itself: a WAL that was never
    # fsynced is lost. Copy only the database file, as such a file system would keep it.
    with offline_client(tmp_path / "spool", "orders") as client:
        (path,) = spool_files(tmp_path / "spool")
        kept = tmp_path / "kept.db"
        shutil.copyfile(path, kept)
        with sqlite3.connect(kept) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"ack_queue_default", "sentinel_meta"} <= tables
        assert recorded_topic(kept) == "orders"
        client.track(service="s", model="m", prompt="p", response="r", latency_ms=1)  # the file is usable


def record_directory_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Patch os.fsync to note each directory fsynced, with what it then held."""
    synced: list[tuple[str, list[str]]] = []
    real_fsync = os.fsync

    def fsync(fd: Any) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            path = os.readlink(f"/proc/self/fd/{fd}")
            synced.append((path, sorted(os.listdir(path))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds through /proc")
def test_power_mode_fsyncs_the_directories_it_creates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = record_directory_fsyncs(monkeypatch)
    spool_dir = tmp_path / "state" / "app" / "spool"
    with Spool(spool_dir, durability="power") as spool:
        paths = [path for path, _ in synced]
        # each directory it made, and each parent that names one of them
        for made in (tmp_path / "state", tmp_path / "state" / "app", spool_dir):
            assert str(made) in paths
            assert str(made.parent) in paths
        # and the spool directory once it names the new spool file
        assert any(path == str(spool_dir) and spool.active_path.name in names for path, names in synced)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds through /proc")
def test_process_mode_does_not_fsync_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = record_directory_fsyncs(monkeypatch)
    with Spool(tmp_path / "a" / "spool", durability="process") as spool:
        spool.put_many(records(3))
    assert synced == []


# --- 9. the backlog is visible after a restart ----------------------------------------------------


def test_first_stats_after_a_restart_shows_the_backlog_and_nothing_in_flight(
    tmp_path: Path, broker: BrokerUnderTest, topic: str
) -> None:
    proxy = broker.proxy
    proxy.cut()  # the broker is down: connections are refused
    options: dict[str, Any] = {"brokers": [broker.bootstrap_servers], "topic": topic, "spool_dir": tmp_path}
    dead = sentinel.Client(**options)
    sent = track(dead, 2014, "svc")
    dead.close(timeout=0.2)  # the process exits without delivering: its file stays on disk
    assert sum(1 for _ in spool_files(tmp_path)) == 1
    with sentinel.Client(**options, write_timeout=2.0) as client:
        first = client.stats()
        assert (first.spooled, first.in_flight) == (2014, 0)
        samples = []

        def attempted() -> bool:
            stats = client.stats()
            samples.append((stats.spooled, stats.in_flight))
            return stats.last_error is not None

        wait_until(attempted, 30, description="a failed delivery attempt")
        assert set(samples) == {(2014, 0)}  # never "in flight" with nothing connected
        proxy.restore()
        assert client.flush(timeout=120)
        stats = client.stats()
        assert (stats.spooled, stats.in_flight, stats.delivered) == (0, 0, 2014)
    assert {json.loads(r.value)["event_id"] for r in broker.read_topic(topic, expected=2014)} == set(sent)
