"""``durability="async"``: a send that waited ``write_timeout`` for a stalled writer gets a typed error.

The stall is real: another SQLite connection holds the spool file's write lock (a tool, a stalled
disk), so the writer thread's commit cannot go through and senders wait for it (that wait is what
bounds a crash's loss). After ``write_timeout`` the waiting send raises ``SpoolFullError`` (the
spool cannot take the event now), never a bare ``SentinelError``; its message names the cause and
never the event's content, and the event is not spooled.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

import sentinel_durable as sentinel
from sentinel_durable.spool import read_events, spool_files

SECRET = "my SSN is 123-45-6789"
WRITE_TIMEOUT_S = 1.0
#: How long the test tracks before giving up on seeing the error: many write_timeouts.
GIVE_UP_S = 30.0


def _track_until_refused(client: sentinel.Client, acknowledged: list[str]) -> None:
    """Track events carrying SECRET as fast as possible, recording each acknowledged id, for GIVE_UP_S."""
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        acknowledged.append(client.track(service="svc", model="m", prompt=SECRET, response=SECRET, latency_ms=1.0))


def test_async_send_behind_a_stalled_writer_raises_spool_full_naming_the_cause(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    client = sentinel.Client(
        brokers=["127.0.0.1:9"],  # nobody answers: every event stays in the spool, where it is counted
        topic="t",
        spool_dir=str(spool_dir),
        durability="async",
        write_timeout=WRITE_TIMEOUT_S,
    )
    acknowledged: list[str] = []
    (path,) = spool_files(spool_dir)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the file's write lock, held: the writer's commits wait
        with pytest.raises(sentinel.SpoolFullError) as raised:
            _track_until_refused(client, acknowledged)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    error = raised.value
    assert type(error) is sentinel.SpoolFullError
    message = str(error)
    assert "async writer is behind" in message, message
    assert "write_timeout" in message, message
    assert SECRET not in message
    assert SECRET not in repr(error)
    # The writer catches up once the lock is released: sends work again, and close() writes the buffer.
    acknowledged.append(client.track(service="svc", model="m", prompt="p", response="r", latency_ms=1.0))
    client.close(timeout=5)
    spooled = [json.loads(body)["event_id"] for file in spool_files(spool_dir) for body in read_events(file)]
    assert sorted(spooled) == sorted(acknowledged)  # every acknowledged event once; the refused one not at all
