"""Faults of the disk and of the spool files: full disks, damaged files, many threads at once."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import offline_client
from spool_helpers import drain_all, leave_spool, records

import sentinel_durable as sentinel
from sentinel_durable.spool import Spool
from sentinel_durable.testing import EmbeddedBroker


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, so that the disk really fills up (needs root, as in CI)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_refuses_sends_cleanly_and_recovers_when_space_frees(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1536 * 1024))  # leave about half a megabyte
    client = offline_client(small_disk / "spool", "full")
    accepted: list[str] = []

    def fill() -> None:
        for n in range(100_000):
            accepted.append(client.track(service="svc", model="m", prompt="x" * 400, response=str(n), latency_ms=1))

    with pytest.raises(sentinel.SpoolFullError) as caught:
        fill()
    assert "full" in str(caught.value)
    assert accepted, "some events fit before the disk filled up"
    stats = client.stats()  # still answers
    assert stats.spooled + stats.in_flight == len(accepted)
    filler.unlink()  # space comes back
    accepted.append(client.track(service="svc", model="m", prompt="after", response="r", latency_ms=1))
    client.close(timeout=0)
    assert {event["event_id"] for event in drain_all(small_disk / "spool")} == set(accepted)


def test_truncated_file_is_quarantined_and_sends_keep_working(tmp_path: Path) -> None:
    path = leave_spool(tmp_path, 2000, size=300).path
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)
    with Spool(tmp_path) as spool:
        spool.adopt_orphans()
        spool.put_many(records(1))
        counts = spool.counts()
        assert [name.split(".corrupt-")[0] for name in counts.quarantined] == [path.name]
        assert counts.pending == 1


def test_missing_wal_keeps_every_checkpointed_event(tmp_path: Path) -> None:
    path = leave_spool(tmp_path, 500, size=300).path
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert len(drain_all(tmp_path)) == 500


def test_missing_wal_of_a_killed_writer_loses_only_what_was_never_checkpointed(tmp_path: Path) -> None:
    path = leave_spool(tmp_path, 300, size=300).path
    spool = Spool(tmp_path)  # a second writer adds events that only live in its WAL...
    spool.put_many(records(50))
    second = spool.active_path
    spool._owned.active.abandon()  # ...and dies without a checkpoint
    spool._closed = True
    Path(f"{second}-wal").unlink()  # then the WAL is lost (a careless copy, a cleanup script)
    found = drain_all(tmp_path)  # opens both files without an error
    assert len(found) == 300  # the first file whole; what lived only in the lost WAL is gone
    assert all(event["metadata"]["n"] for event in found)
    assert path.exists()  # claimed, not acked: still on disk


def test_sixteen_threads_sending_while_flushing_and_closing_lose_nothing(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        client = sentinel.Client(brokers=[broker.bootstrap_servers], topic="many", spool_dir=tmp_path / "spool")
        accepted: list[list[str]] = [[] for _ in range(16)]
        start = threading.Barrier(17)

        def send(slot: int) -> None:
            start.wait()
            for n in range(300):
                try:
                    accepted[slot].append(
                        client.track(service=f"s{slot}", model="m", prompt=str(n), response="r", latency_ms=1)
                    )
                except sentinel.ClientClosedError:
                    return

        threads = [threading.Thread(target=send, args=(slot,)) for slot in range(16)]
        for thread in threads:
            thread.start()
        start.wait()
        for _ in range(3):
            client.flush(timeout=5)  # flushes while the senders are at it
        client.close(timeout=10)  # and a close in the middle of it all
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a sender is stuck"
        sent = {event_id for ids in accepted for event_id in ids}
        with sentinel.Client(brokers=[broker.bootstrap_servers], topic="many", spool_dir=tmp_path / "spool") as rest:
            assert rest.flush(timeout=60)
        found = {r.value for r in broker.read_topic("many", expected=len(sent))}
    delivered = {sentinel.TelemetryEvent.from_json(value).event_id for value in found}
    assert sent <= delivered
    assert drain_all(tmp_path / "spool") == []
