"""``durability="async"``: what a kill -9 can lose is bounded, as docs/guarantees.md says.

A process floods the client from several threads (as fast as they can), each ``track`` reported
with the moment it returned; it is SIGKILLed after a random number of acknowledged events, and
the spool it left is read. Half the kills come while the spool file's write lock is held by
another connection for half a second — a disk or a tool that stalls the writer, the moment the
writer falls behind the senders. The bound held is the one that does not depend on how much
CPU or disk the machine gives the process: only events among the last ``MAX_LOST`` acknowledged
may be missing. The age of the oldest missing event (the window in time) is measured and
reported, not asserted: a process stalled right after acknowledging an event cannot commit it,
whatever the code does.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import offline_client
from spool_helpers import drain_all, leave_spool

from sentinel_durable.spool import read_events, spool_files
from sentinel_durable.spool.commit import AsyncBuffer

FLOOD = Path(__file__).parent / "programs" / "async_flood.py"
#: The documented bound: the async buffer filling and the one being committed, 1,000 events each.
MAX_LOST = 2 * AsyncBuffer.LIMIT
THREADS = 4
KILLS = 4
STALL_S = 0.5


@dataclass(frozen=True)
class KillResult:
    acknowledged: int
    lost: int
    lost_outside_bound: int  # missing events acknowledged before the last MAX_LOST
    oldest_lost_age_s: float  # 0 when nothing was lost
    rate: float  # acknowledged events per second

    def summary(self) -> str:
        return (
            f"acknowledged={self.acknowledged} lost={self.lost} lost_outside_bound={self.lost_outside_bound}"
            f" oldest_lost_ms={self.oldest_lost_age_s * 1000:.0f} events_per_s={self.rate:.0f}"
        )


def _read(fd: int, chunks: list[bytes], *, lines: int = 0, until: float = 0.0) -> None:
    """Append the sender's output to ``chunks`` until it holds ``lines`` lines and ``until`` (monotonic) passed."""
    count = sum(chunk.count(b"\n") for chunk in chunks)
    while count < lines or (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left if count >= lines else 30.0)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        assert chunk, "the sender ended by itself"
        chunks.append(chunk)
        count += chunk.count(b"\n")


def kill_a_flooding_sender(
    spool_dir: Path, kill_after: int, *, stall_s: float = 0.0, batch_timeout: float = 0.0
) -> KillResult:
    """Flood; once ``kill_after`` events were acknowledged, stall the spool's writer for ``stall_s``
    (another connection holds the file's write lock), SIGKILL, and compare with what is on disk."""
    process = subprocess.Popen(
        [sys.executable, str(FLOOD), str(spool_dir), "127.0.0.1:9", str(THREADS), str(batch_timeout)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    staller: sqlite3.Connection | None = None
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        fd, chunks = process.stdout.fileno(), []
        _read(fd, chunks, lines=kill_after)
        if stall_s:
            (path,) = spool_files(spool_dir)
            staller = sqlite3.connect(path, timeout=10, isolation_level=None)
            staller.execute("BEGIN IMMEDIATE")  # the writer's next commit waits for this
            _read(fd, chunks, until=time.monotonic() + stall_s)  # keep reading: a full pipe would block the senders
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
        chunks.append(process.stdout.read())  # the lines written before the kill
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL, f"the sender stopped by itself ({process.returncode})"
    finally:
        if staller is not None:
            staller.execute("ROLLBACK")
            staller.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    # Each sender thread writes its lines 20 at a time: up to 20 per thread acknowledged last are
    # not known here, which can only hide losses among the very last events.
    lines_out = b"".join(chunks).decode().splitlines()
    acknowledged = sorted((float(returned_at), event_id) for event_id, returned_at in map(str.split, lines_out))
    on_disk = {event["event_id"] for event in drain_all(spool_dir)}
    lost = [(position, returned_at) for position, (returned_at, event_id) in enumerate(acknowledged)
            if event_id not in on_disk]  # fmt: skip
    span = acknowledged[-1][0] - acknowledged[0][0]
    return KillResult(
        acknowledged=len(acknowledged),
        lost=len(lost),
        lost_outside_bound=sum(1 for position, _ in lost if position < len(acknowledged) - MAX_LOST),
        oldest_lost_age_s=max((killed_at - returned_at for _, returned_at in lost), default=0.0),
        rate=len(acknowledged) / span if span else 0.0,
    )


def test_kill_9_of_a_flooded_async_client_loses_only_its_last_2000_events(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    results = [
        kill_a_flooding_sender(
            tmp_path / f"kill-{n}", kill_after=rng.randint(5_000, 20_000), stall_s=STALL_S if n % 2 else 0.0
        )
        for n in range(KILLS)
    ]
    report = f"seed={seed}: " + "; ".join(result.summary() for result in results)
    assert all(result.lost <= MAX_LOST and result.lost_outside_bound == 0 for result in results), report


if __name__ == "__main__":  # a measurement: python tests/test_async_loss_window.py [KILLS] [STALL_S] [BATCH_TIMEOUT_S]
    import tempfile

    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    stall_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    batch_timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    with tempfile.TemporaryDirectory() as scratch:
        for n in range(kills):
            result = kill_a_flooding_sender(
                Path(scratch) / f"kill-{n}", 8_000 + 2_000 * n, stall_s=stall_s, batch_timeout=batch_timeout
            )
            print(f"stall_s={stall_s} batch_timeout={batch_timeout}: {result.summary()}", flush=True)


def test_flush_writes_the_async_buffer_to_disk_even_when_its_timeout_ends_first(spool_dir: Path) -> None:
    """``flush(0)`` is how an async sender makes its events survive a kill (chaos_sender.py): the buffer
    is on disk when it returns, even with orphans in the directory still to be adopted."""
    leave_spool(spool_dir, 5, topic="orders")  # an orphan: flush would wait for its adoption
    with offline_client(spool_dir, topic="orders", durability="async", batch_timeout=60) as client:
        ids = [client.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0) for _ in range(20)]
        client.flush(timeout=0)
        on_disk = {json.loads(body)["event_id"] for path in spool_files(spool_dir) for body in read_events(path)}
        assert set(ids) <= on_disk
        client.close(timeout=0)
