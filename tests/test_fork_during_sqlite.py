"""A fork while another thread of the parent is inside SQLite: the child's spool still works.

SQLite guards process-wide state (its allocator's statistics, its table of open files) with
mutexes. A child forked while a parent thread holds one inherits it locked, by a thread that does
not exist in the child, and the child's first SQLite call (opening its own spool file) waits
forever: a fork pool whose parent's flusher was busy hung in ``pool.map``. Here a parent thread
keeps the spool busy (adoption passes open and close the children's files, stats read counts)
while the main thread forks children that each track an event through the inherited client.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import Counter
from pathlib import Path

from conftest import BrokerUnderTest

import sentinel_durable as sentinel

CHILDREN = 24
#: A child tracks one event and closes its client; far more than it needs.
CHILD_DEADLINE_S = 30.0


def _track_one(client: sentinel.Client, number: int) -> None:
    client.track(service="child", model="m", prompt="p", response="r", latency_ms=1.0, metadata={"child": str(number)})


def test_children_forked_while_a_parent_thread_is_in_sqlite_track_and_exit(
    tmp_path: Path, broker: BrokerUnderTest, topic: str
) -> None:
    context = multiprocessing.get_context("fork")
    client = sentinel.Client(brokers=[broker.bootstrap_servers], topic=topic, spool_dir=str(tmp_path / "spool"))
    stop = threading.Event()

    def keep_the_spool_busy() -> None:
        while not stop.is_set():
            client.flush(timeout=0)  # an adoption pass: opens and closes a connection per child file
            client.stats()

    busy = threading.Thread(target=keep_the_spool_busy, name="busy-parent")
    busy.start()
    hung: list[int] = []
    failed: list[tuple[int, int | None]] = []
    try:
        for number in range(CHILDREN):
            child = context.Process(target=_track_one, args=(client, number))
            child.start()
            child.join(CHILD_DEADLINE_S)
            if child.is_alive():
                hung.append(number)
                child.kill()
                child.join(CHILD_DEADLINE_S)
            elif child.exitcode != 0:
                failed.append((number, child.exitcode))
    finally:
        stop.set()
        busy.join(CHILD_DEADLINE_S)
    try:
        assert (hung, failed) == ([], []), f"children hung past {CHILD_DEADLINE_S:g}s: {hung}; failed: {failed}"
        assert client.flush(timeout=60)  # what a child left on disk, adopted
    finally:
        client.close(timeout=5)
    delivered = Counter(json.loads(record.value)["metadata"]["child"] for record in broker.read_topic(topic, CHILDREN))
    assert delivered == Counter(str(number) for number in range(CHILDREN))
